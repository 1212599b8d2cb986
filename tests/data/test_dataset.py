"""PairedDataset behaviour, and load_dataset's choice between Flickr8k and a manifest."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.data import DataError, Item, PairedDataset, load_dataset


def toy() -> PairedDataset:
    return PairedDataset(
        "toy",
        [
            Item("a", "train", {"image": ("a.jpg",), "text": ("a1", "a2")}),
            Item("b", "test", {"text": ("b1",)}),
            Item("c", "train", {"image": ("c.jpg",), "text": ("c1", "c2", "c3")}),
            Item("d", "test", {"image": ("d.jpg",)}),
        ],
    )


def test_modalities_and_splits_in_first_seen_order():
    dataset = toy()
    assert (len(dataset), dataset.modalities, dataset.splits) == (4, ("image", "text"), ("train", "test"))


def test_split_keeps_order():
    train = toy().split("train")
    assert (train.name, [item.id for item in train.items]) == ("toy/train", ["a", "c"])


def test_unknown_split():
    with pytest.raises(DataError, match="toy: unknown split 'tset'; available splits: train, test"):
        toy().split("tset")


def test_subset():
    assert [item.id for item in toy().subset(2).items] == ["a", "b"]


def test_flatten_maps_each_value_to_its_item():
    texts = toy().flatten("text")
    assert texts.values == ["a1", "a2", "b1", "c1", "c2", "c3"]
    assert np.array_equal(texts.item_index, [0, 0, 1, 2, 2, 2])
    images = toy().flatten("image")
    assert images.values == ["a.jpg", "c.jpg", "d.jpg"]
    assert np.array_equal(images.item_index, [0, 2, 3])


def test_flatten_unknown_modality():
    with pytest.raises(DataError, match="unknown modality 'audio'"):
        toy().flatten("audio")


def test_duplicate_ids():
    with pytest.raises(DataError, match=r"duplicate item id 'a' \(items 0 and 1\)"):
        PairedDataset("dup", [Item("a", "train"), Item("a", "test")])


def test_load_dataset_reads_a_manifest(tmp_path):
    manifest = tmp_path / "notes.csv"
    manifest.write_text("id,text\nx,A caption .\n")
    assert load_dataset(str(manifest)).items == [Item("x", "train", {"text": ("A caption .",)})]


@pytest.mark.data
def test_load_dataset_flickr8k(data_root):
    assert len(load_dataset("flickr8k", data_root)) == 8000


def test_load_dataset_flickr8k_missing_root(tmp_path):
    with pytest.raises(DataError, match="data root not found"):
        load_dataset("flickr8k", tmp_path / "absent")


def test_load_dataset_unknown_name():
    message = "unknown dataset 'coco': expected 'flickr8k' or 'flickr8k-multi30k' or a path to a .jsonl/.csv manifest"
    with pytest.raises(DataError, match=message):
        load_dataset("coco")
