"""Manifests with named modalities: kinds by rule or declaration, audio paths, precomputed
vectors (inline, .npy, Parquet), and every error naming its file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xmodal.data import DataError, load_manifest


def write_jsonl(path: Path, *objects: dict) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


def located(path: Path, line: int, message: str) -> str:
    return re.escape(f"{path}:{line}: ") + ".*" + message


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """tmp_path with two audio files and a 3 x 4 .npy of vectors."""
    (tmp_path / "a.ogg").write_bytes(b"OggS")
    (tmp_path / "b.ogg").write_bytes(b"OggS")
    np.save(tmp_path / "emb.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    return tmp_path


def test_named_modalities_by_rule(files):
    manifest = write_jsonl(
        files / "m.jsonl",
        {"id": "x", "text.en": "A cat.", "text.fr": ["Un chat.", "Le chat."], "audio.en": "a.ogg"},
        {"id": "y", "split": "test", "text.en": "A dog.", "audio.en": ["b.ogg"], "vector.mine": [1, 2]},
        {"id": "z", "split": "test", "vector.mine": [[3, 4], [5.5, 6]]},
    )
    dataset = load_manifest(manifest)
    assert dataset.modalities == ("text.en", "text.fr", "audio.en", "vector.mine")
    assert [dataset.kind(m) for m in dataset.modalities] == ["text", "text", "audio", "vector"]
    assert dataset.items[0].values == {
        "text.en": ("A cat.",),
        "text.fr": ("Un chat.", "Le chat."),
        "audio.en": (str(files / "a.ogg"),),
    }
    assert dataset.items[2].values == {"vector.mine": ("1", "2")}
    np.testing.assert_array_equal(dataset.vectors["vector.mine"], [[1, 2], [3, 4], [5.5, 6]])
    test = dataset.split("test")
    assert test.kind("vector.mine") == "vector" and test.vectors["vector.mine"].shape == (3, 2)
    assert test.flatten("vector.mine").values == ["0", "1", "2"]


def test_declared_modalities_npy_and_parquet(files):
    pq.write_table(pa.table({"embedding": [[0.5, 1.5], [2.5, 3.5]]}), files / "emb.parquet")
    header = {
        "xmodal": "manifest",
        "modalities": {
            "caption_nl": "text",
            "clip": {"kind": "vector", "file": "emb.npy", "dim": 4},
            "pq": {"kind": "vector", "file": "emb.parquet", "column": "embedding"},
        },
        "ignore": ["url"],
    }
    manifest = write_jsonl(
        files / "m.jsonl",
        header,
        {"id": "x", "caption_nl": "Een kat.", "clip": 2, "pq": [1, 0], "url": "http://example.org"},
        {"id": "y", "clip": [0, 1]},
    )
    dataset = load_manifest(manifest)
    assert dataset.kinds == {"caption_nl": "text", "clip": "vector", "pq": "vector"}
    assert dataset.items[0].values == {"caption_nl": ("Een kat.",), "clip": ("2",), "pq": ("1", "0")}
    assert dataset.items[1].values == {"clip": ("0", "1")}
    np.testing.assert_array_equal(dataset.vectors["clip"][[2, 0, 1]][:, 0], [8, 0, 4])
    np.testing.assert_array_equal(dataset.vectors["pq"], [[0.5, 1.5], [2.5, 3.5]])


def test_sidecar_declarations_and_csv(files):
    (files / "m.modalities.json").write_text(
        json.dumps({"modalities": {"clip": {"kind": "vector", "file": "emb.npy"}}})
    )
    manifest = files / "m.csv"
    manifest.write_text(
        "id,split,text,text.de,clip\nx,train,A cat.,Eine Katze.,1\nx,train,The cat.,,1\ny,test,A dog.,,\n"
    )
    dataset = load_manifest(manifest)
    assert [(i.id, i.values) for i in dataset.items] == [
        ("x", {"text": ("A cat.", "The cat."), "text.de": ("Eine Katze.",), "clip": ("1",)}),
        ("y", {"text": ("A dog.",)}),
    ]


MANIFEST_ERRORS = [
    # (lines of the manifest, line of the error, message)
    ([{"id": "a", "text": "ok", "colour": "red"}], 1, "unknown key 'colour': declare its kind"),
    ([{"id": "a", "text": "ok"}, {"id": "b", "vidéo": "x.mp4"}], 2, "unknown key 'vidéo'"),
    (
        [{"xmodal": "manifest", "modalities": {"smell": "odour"}}, {"id": "a"}],
        1,
        "modality 'smell': unknown kind 'odour'",
    ),
    (
        [{"xmodal": "manifest", "modalities": {"v": {"kind": "vector", "dim": 3}}}, {"id": "a", "v": [1, 2]}],
        2,
        "'v': vector of length 2, but the declared dim is 3",
    ),
    (
        [{"id": "a", "vector.x": [1, 2, 3]}, {"id": "b", "vector.x": [1, 2]}],
        2,
        "'vector.x': mixed dimensions: a vector of length 2, but the one on line 1 has length 3",
    ),
    (
        [{"xmodal": "manifest", "modalities": {"v": {"kind": "vector", "file": "gone.npy"}}}, {"id": "a", "v": 0}],
        1,
        "'v': vector file not found: .*gone\\.npy",
    ),
    (
        [{"xmodal": "manifest", "modalities": {"v": {"kind": "vector", "file": "emb.npy"}}}, {"id": "a", "v": 3}],
        2,
        "'v': expected row numbers 0..2 into .*emb\\.npy, got 3",
    ),
    (
        [{"xmodal": "manifest", "modalities": {"v": {"kind": "vector", "file": "emb.npy", "dim": 5}}}],
        1,
        "vectors of length 4, declared dim 5",
    ),
    ([{"id": "a", "vector.x": [1, "2"]}], 1, "a vector is a non-empty list of numbers"),
    ([{"id": "a", "vector.x": "1,2"}], 1, "expected a list of numbers"),
    ([{"id": "a", "audio.en": "missing.ogg"}], 1, "audio file not found: .*missing\\.ogg"),
    ([{"id": "a", "text.fr": ["ok", 3]}], 1, "'text.fr' must be a string or a list of texts"),
    ([{"id": "a", "text.fr": " "}], 1, "empty caption for item 'a'"),
    ([{"id": "a", "text": "ok"}, {"xmodal": "manifest"}], 2, "a header line comes first"),
    ([{"xmodal": "manifest", "modalities": {"t": {"kind": "text", "file": "x"}}}], 1, "only vector modalities take"),
]


@pytest.mark.parametrize(("lines", "line", "message"), MANIFEST_ERRORS)
def test_manifest_errors(files, lines, line, message):
    manifest = write_jsonl(files / "broken.jsonl", *lines)
    with pytest.raises(DataError, match=located(manifest, line, message)):
        load_manifest(manifest)


def test_nan_vector_is_an_error(files):
    manifest = files / "nan.jsonl"
    manifest.write_text('{"id": "a", "vector.x": [1, NaN]}\n')
    with pytest.raises(DataError, match=located(manifest, 1, "'vector.x': the vector holds NaN")):
        load_manifest(manifest)


def test_sidecar_errors_name_the_sidecar(files):
    sidecar = files / "m.modalities.json"
    sidecar.write_text('{"modalities": {"v": "vector"}, "ignored": []}')
    write_jsonl(files / "m.jsonl", {"id": "a", "v": [1.0]})
    with pytest.raises(DataError, match=located(sidecar, 1, "unknown declaration key 'ignored'")):
        load_manifest(files / "m.jsonl")
    sidecar.write_text('{"modalities": {}}')
    write_jsonl(files / "m.jsonl", {"xmodal": "manifest"}, {"id": "a", "text": "ok"})
    with pytest.raises(DataError, match=located(files / "m.jsonl", 1, "modalities declared twice")):
        load_manifest(files / "m.jsonl")


def test_json_nested_too_deeply_is_an_error_not_a_crash(tmp_path):
    manifest = tmp_path / "deep.jsonl"
    manifest.write_text('{"id": "a", "text": "ok"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataError, match=located(manifest, 2, "invalid JSON: nested too deeply")):
        load_manifest(manifest)
