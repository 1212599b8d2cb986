"""Atomic writes: the old content or the new one, never a partial file or folder."""

from __future__ import annotations

import pytest

from xmodal.core.files import atomic_folder, atomic_path, write_text_atomic


def test_write_text_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "results.md"
    write_text_atomic(path, "first")
    write_text_atomic(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.md"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_path(path, suffix=".npz") as tmp:
        assert tmp.name.endswith(".npz") and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_a_folder_is_swapped_in_whole(tmp_path):
    target = tmp_path / "index"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not target.exists()  # nothing visible before the block ends
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "1"
    with atomic_folder(target) as tmp:
        (tmp / "b.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
