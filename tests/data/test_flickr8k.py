"""Flickr8k loader: the real data set, and small broken copies of its layout."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from xmodal.data import DataError, default_data_root, load_flickr8k


@pytest.mark.data
def test_official_split_sizes(flickr8k):
    assert len(flickr8k) == 8000
    assert flickr8k.splits == ("train", "dev", "test")
    assert [len(flickr8k.split(name)) for name in flickr8k.splits] == [6000, 1000, 1000]
    assert flickr8k.modalities == ("image", "text")


@pytest.mark.data
def test_every_item_has_one_existing_image_and_five_captions(flickr8k):
    for item in flickr8k.items:
        (image,) = item.values["image"]
        assert os.path.isabs(image) and Path(image).name == item.id and os.path.exists(image)
        assert len(item.values["text"]) == 5
        assert all(caption and caption == caption.strip() for caption in item.values["text"])


@pytest.mark.data
def test_known_captions_in_file_order(flickr8k):
    item = next(i for i in flickr8k.items if i.id == "1012212859_01547e3f17.jpg")
    assert item.split == "train"
    assert item.values["text"] == (
        "A dog shakes its head near the shore , a red ball next to it .",
        "A white dog shakes on the edge of a beach with an orange ball .",
        "Dog with orange ball at feet , stands on shore shaking off water",
        "White dog playing with a red ball on the shore near the water .",
        "White dog with brown ears standing near water with head turned to one side .",
    )


@pytest.mark.data
def test_order_follows_split_files_and_is_deterministic(flickr8k, data_root):
    base = data_root / "flickr8k"
    expected = [
        name
        for split in ("train", "dev", "test")
        for name in (base / f"Flickr_8k.{split}Images.txt").read_text().split()
    ]
    assert [item.id for item in flickr8k.items] == expected
    assert flickr8k.items[0].id == "2513260012_03d33305cf.jpg"
    assert flickr8k.split("test").items[-1].id == "3490736665_38710f4b91.jpg"
    assert load_flickr8k(data_root).items == flickr8k.items


@pytest.mark.data
def test_test_split_gives_the_standard_5000_caption_queries(flickr8k):
    texts = flickr8k.split("test").flatten("text")
    assert len(texts.values) == 5000
    assert np.array_equal(texts.item_index, np.repeat(np.arange(1000), 5))


@pytest.mark.data
def test_unknown_split_names_the_available_ones(flickr8k):
    with pytest.raises(DataError, match="unknown split 'tset'.*train, dev, test"):
        flickr8k.split("tset")


@pytest.mark.data
def test_default_root_from_environment(monkeypatch, data_root):
    monkeypatch.setenv("XMODAL_DATA", str(data_root))
    assert default_data_root() == data_root
    assert len(load_flickr8k()) == 8000


def test_default_root_relative_to_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("XMODAL_DATA", raising=False)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert default_data_root() == tmp_path / "shared" / "data"


# --- small broken copies -------------------------------------------------------------------

IMAGES = ["a.jpg", "b.jpg", "c.jpg"]
CAPTIONS = 'image,caption\na.jpg,A cat .\na.jpg,"A cat, sleeping ."\nb.jpg,A dog .\nc.jpg,A bird .\n'
SPLITS = {"train": "a.jpg\n", "dev": "b.jpg\n", "test": "c.jpg\n"}


def make_flickr8k(root: Path, captions: str = CAPTIONS, **splits: str | None) -> Path:
    """A tiny Flickr8k layout under ``root``; a split given as None is left out."""
    base = root / "flickr8k"
    (base / "Images").mkdir(parents=True)
    for name in IMAGES:
        (base / "Images" / name).write_bytes(b"not decoded at load time")
    (base / "captions.txt").write_text(captions)
    for split, text in (SPLITS | splits).items():
        if text is not None:
            (base / f"Flickr_8k.{split}Images.txt").write_text(text)
    return base


def located(path: Path, line: int, message: str) -> str:
    return re.escape(f"{path}:{line}: ") + message


def test_tiny_copy_loads(tmp_path):
    make_flickr8k(tmp_path)
    dataset = load_flickr8k(tmp_path)
    assert [(i.id, i.split) for i in dataset.items] == [
        ("a.jpg", "train"),
        ("b.jpg", "dev"),
        ("c.jpg", "test"),
    ]
    assert dataset.items[0].values == {
        "image": (str(tmp_path / "flickr8k" / "Images" / "a.jpg"),),
        "text": ("A cat .", "A cat, sleeping ."),
    }


def test_missing_root(tmp_path):
    message = "data root not found: " + re.escape(str(tmp_path / "x")) + ".*--data.*XMODAL_DATA"
    with pytest.raises(DataError, match=message):
        load_flickr8k(tmp_path / "x")


def test_missing_flickr8k_directory(tmp_path):
    with pytest.raises(DataError, match="Flickr8k directory not found: .*flickr8k.*XMODAL_DATA"):
        load_flickr8k(tmp_path)


def test_missing_captions_file(tmp_path):
    (make_flickr8k(tmp_path) / "captions.txt").unlink()
    with pytest.raises(DataError, match="captions file not found: .*captions.txt.*--data"):
        load_flickr8k(tmp_path)


def test_missing_split_file(tmp_path):
    make_flickr8k(tmp_path, dev=None)
    with pytest.raises(DataError, match=r"split file not found: .*Flickr_8k\.devImages\.txt"):
        load_flickr8k(tmp_path)


def test_bad_header(tmp_path):
    base = make_flickr8k(tmp_path, captions="file,text\na.jpg,A cat .\n")
    with pytest.raises(DataError, match=located(base / "captions.txt", 1, "expected header")):
        load_flickr8k(tmp_path)


@pytest.mark.parametrize("row", ["b.jpg,", "b.jpg,   ", "b.jpg"])
def test_empty_caption(tmp_path, row):
    base = make_flickr8k(tmp_path, captions=CAPTIONS.replace("b.jpg,A dog .", row))
    message = located(base / "captions.txt", 4, r"empty caption for image b\.jpg")
    with pytest.raises(DataError, match=message):
        load_flickr8k(tmp_path)


def test_unquoted_comma_in_caption(tmp_path):
    base = make_flickr8k(tmp_path, captions=CAPTIONS.replace("A dog .", "A dog, running ,fast"))
    with pytest.raises(DataError, match=located(base / "captions.txt", 4, "expected 2 fields")):
        load_flickr8k(tmp_path)


def test_split_names_an_image_without_captions(tmp_path):
    base = make_flickr8k(tmp_path, test="c.jpg\nd.jpg\n")
    split_file = base / "Flickr_8k.testImages.txt"
    with pytest.raises(DataError, match=located(split_file, 2, r"image d\.jpg has no captions")):
        load_flickr8k(tmp_path)


def test_split_names_a_missing_image_file(tmp_path):
    base = make_flickr8k(tmp_path)
    (base / "Images" / "a.jpg").unlink()
    split_file = base / "Flickr_8k.trainImages.txt"
    with pytest.raises(DataError, match=located(split_file, 1, "image file not found: .*a\\.jpg")):
        load_flickr8k(tmp_path)


def test_image_in_two_splits(tmp_path):
    base = make_flickr8k(tmp_path, dev="b.jpg\na.jpg\n")
    dev_file, train_file = base / "Flickr_8k.devImages.txt", base / "Flickr_8k.trainImages.txt"
    message = r"image a\.jpg is already listed at " + re.escape(f"{train_file}:1")
    with pytest.raises(DataError, match=located(dev_file, 2, message)):
        load_flickr8k(tmp_path)
