"""Class labels in manifests: the reserved ``label`` (and ``label.NAME``) keys and CSV columns,
carried by PairedDataset through splits; bad labels are errors naming file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xmodal.data import DataError, load_manifest


def write_jsonl(path: Path, *objects: dict) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


def test_jsonl_labels(tmp_path):
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        {"id": "a", "text": "A frog.", "label": " animals ", "label.group": "amphibians"},
        {"id": "b", "split": "test", "text": "A bus.", "label": "vehicles"},
        {"id": "c", "split": "test", "text": "A thing.", "label": None},
    )
    dataset = load_manifest(manifest)
    assert dataset.modalities == ("text",)
    assert dataset.items[0].labels == {"label": "animals", "label.group": "amphibians"}
    assert dataset.label_keys == ("label", "label.group")
    assert dataset.labels() == ["animals", "vehicles", None]
    assert dataset.labels("label.group") == ["amphibians", None, None]
    test = dataset.split("test")
    assert test.labels() == ["vehicles", None]
    with pytest.raises(DataError, match=r"m/test: no item has a 'label.group' label \(label keys: label\)"):
        test.labels("label.group")


def test_csv_labels_empty_cells_and_merged_rows(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,split,text,label\na,train,A frog.,animals\na,train,A toad.,\nb,test,A bus.,\n")
    dataset = load_manifest(manifest)
    assert dataset.items[0].values == {"text": ("A frog.", "A toad.")}
    assert dataset.labels() == ["animals", None]


def test_manifests_without_labels_and_ignored_labels(tmp_path):
    plain = load_manifest(write_jsonl(tmp_path / "plain.jsonl", {"id": "a", "text": "A frog."}))
    assert plain.label_keys == () and plain.items[0].labels == {}
    with pytest.raises(DataError, match=r"no item has a 'label' label \(label keys: none\)"):
        plain.labels()
    header = {"xmodal": "manifest", "ignore": ["label"]}
    ignored = write_jsonl(tmp_path / "ignored.jsonl", header, {"id": "a", "text": "A frog.", "label": 3})
    assert load_manifest(ignored).label_keys == ()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"id": "a", "text": "A frog.", "label": ""}, "'label' of item 'a' must be a non-empty string, got \"\""),
        ({"id": "a", "text": "A frog.", "label": "  "}, "'label' of item 'a' must be a non-empty string"),
        ({"id": "a", "text": "A frog.", "label": 3}, "'label' of item 'a' must be a non-empty string, got 3"),
        ({"id": "a", "text": "A frog.", "label.x": ["a"]}, "'label.x' of item 'a' must be a non-empty string"),
        ({"id": "a", "label": "animals"}, "item 'a' has no value of any modality"),
    ],
)
def test_bad_labels_name_file_and_line(tmp_path, line, message):
    manifest = write_jsonl(tmp_path / "m.jsonl", {"id": "ok", "text": "Fine."}, line)
    with pytest.raises(DataError, match=re.escape(f"{manifest}:2: {message}")):
        load_manifest(manifest)


def test_label_errors_in_csv_and_declarations(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text,label\na,A frog.,animals\na,A toad.,plants\n")
    with pytest.raises(DataError, match=re.escape(f"{manifest}:3: item 'a': label 'plants' differs from 'animals'")):
        load_manifest(manifest)
    declared = write_jsonl(tmp_path / "d.jsonl", {"xmodal": "manifest", "modalities": {"label": "text"}})
    with pytest.raises(DataError, match=re.escape(f"{declared}:1: 'label' is not a modality name (reserved)")):
        load_manifest(declared)
