"""Flickr8k joined with Multi30k: real counts, a known sentence, and broken copies."""

from __future__ import annotations

import gzip
import shutil

import pytest

from xmodal.data import DataError
from xmodal.data.multi30k import MODALITIES, load_flickr8k_multi30k

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def joined(data_root):
    return load_flickr8k_multi30k(data_root)


def test_keeps_flickr8k_items_and_split_and_adds_languages(joined):
    assert len(joined) == 8000 and joined.splits == ("train", "dev", "test")
    assert joined.modalities == MODALITIES
    complete = [i for i in joined.items if all(m in i.values for m in MODALITIES)]
    # ../shared/data/README.md: 929 Flickr8k test images have every modality
    assert sum(i.split == "test" for i in complete) == 929
    assert 7000 < len(complete) < 7478  # 7,478 over all 8,091 images, 8,000 are in a split
    for item in complete:
        assert len(item.values["en"]) == 5 and len(item.values["de"]) == 5
        assert all(len(item.values[m]) == 1 for m in ("en1", "de1", "fr1", "cs1"))
    assert any("de" not in i.values for i in joined.items)  # items may miss a modality


def test_known_sentences(joined):
    item = next(i for i in joined.items if i.id.startswith("2513260012_"))
    assert item.values["de"][0] == "Ein schwarzer und ein brauner Hund laufen im Schnee."
    assert item.values["en1"] == ("Two dogs running through a low lying body of water.",)
    assert item.values["cs1"] == ("Dva psy běží v nízkém proudu vody.",)
    flat = joined.split("test").flatten("de")
    assert len(flat.values) == 5 * 929


@pytest.fixture
def broken_root(tmp_path, data_root):
    """A copy of the Multi30k layout beside a link to the real Flickr8k."""
    (tmp_path / "flickr8k").symlink_to(data_root / "flickr8k")
    shutil.copytree(data_root / "multi30k", tmp_path / "multi30k")
    return tmp_path


def test_misaligned_file_is_named(broken_root):
    path = broken_root / "multi30k" / "task2" / "raw" / "val.3.de.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines[:-5]) + "\n")
    with pytest.raises(DataError, match=r"val\.3\.de\.gz: 1009 lines, but its image split lists 1014 images"):
        load_flickr8k_multi30k(broken_root)


def test_missing_split_file_is_named(broken_root):
    (broken_root / "multi30k" / "task1" / "image_splits" / "val.txt").unlink()
    with pytest.raises(DataError, match=r"Multi30k file not found: .*task1/image_splits/val\.txt"):
        load_flickr8k_multi30k(broken_root)
