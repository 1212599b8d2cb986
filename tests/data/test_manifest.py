"""JSONL and CSV manifests: real Flickr8k images copied next to them, and each error case."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from xmodal.data import DataError, load_manifest

REAL = ["2513260012_03d33305cf.jpg", "1012212859_01547e3f17.jpg", "3385593926_d3e9c21170.jpg"]


@pytest.fixture
def root(tmp_path: Path, data_root: Path) -> Path:
    """tmp_path with imgs/{a,b,c}.jpg copied from Flickr8k, a corrupt imgs/bad.jpg and a
    truncated imgs/half.jpg."""
    (tmp_path / "imgs").mkdir()
    for name, real in zip("abc", REAL):
        shutil.copy(data_root / "flickr8k" / "Images" / real, tmp_path / "imgs" / f"{name}.jpg")
    (tmp_path / "imgs" / "bad.jpg").write_bytes(os.urandom(2048))
    whole = (tmp_path / "imgs" / "a.jpg").read_bytes()
    (tmp_path / "imgs" / "half.jpg").write_bytes(whole[: len(whole) // 2])
    return tmp_path


def located(path: Path, line: int, message: str) -> str:
    return re.escape(f"{path}:{line}: ") + message


@pytest.mark.data
def test_jsonl(root):
    absolute_c = str(root / "imgs" / "c.jpg")
    manifest = root / "mine.jsonl"
    manifest.write_text(
        json.dumps({"xmodal": "manifest", "ignore": ["extra"]})
        + "\n"
        + json.dumps({"id": "a", "image": "imgs/a.jpg", "texts": ["A dog .", " Two dogs . "]})
        + "\n\n"
        + json.dumps({"id": "b", "split": "test", "image": "./imgs/b.jpg", "text": "A ball ."})
        + "\n"
        + json.dumps({"id": "c", "split": "test", "image": absolute_c, "extra": 1})
        + "\n"
        + json.dumps({"id": "d", "split": "val", "texts": ["Only words ."]})
        + "\n"
    )
    dataset = load_manifest(manifest)
    assert dataset.name == "mine"
    assert dataset.splits == ("train", "test", "val")
    assert dataset.modalities == ("image", "text")
    images = root / "imgs"
    assert [(item.id, item.split, item.values) for item in dataset.items] == [
        ("a", "train", {"image": (str(images / "a.jpg"),), "text": ("A dog .", "Two dogs .")}),
        ("b", "test", {"image": (str(images / "b.jpg"),), "text": ("A ball .",)}),
        ("c", "test", {"image": (absolute_c,)}),
        ("d", "val", {"text": ("Only words .",)}),
    ]
    assert [item.id for item in dataset.split("test").items] == ["b", "c"]
    with pytest.raises(DataError, match="unknown split 'nope'"):
        dataset.split("nope")


@pytest.mark.data
def test_csv(root):
    manifest = root / "sub" / "mine.csv"
    manifest.parent.mkdir()
    (manifest.parent / "mine.modalities.json").write_text('{"ignore": ["notes"]}')
    manifest.write_text(
        "\ufeffid,image,text,split,notes\n"
        'a,../imgs/a.jpg,"A dog, in snow .",train,x\n'
        "b,../imgs/b.jpg,A ball .,,\n"
        "a,../imgs/a.jpg,  Two dogs . ,train,\n"
        "\n"
        'c,../imgs/c.jpg,"A caption\nover two lines",test,\n'
        "c,../imgs/c.jpg,Last .,test,\n"
    )
    dataset = load_manifest(manifest)
    image = {name: (str(root / "imgs" / f"{name}.jpg"),) for name in "abc"}
    assert [(item.id, item.split, item.values) for item in dataset.items] == [
        ("a", "train", {"image": image["a"], "text": ("A dog, in snow .", "Two dogs .")}),
        ("b", "train", {"image": image["b"], "text": ("A ball .",)}),
        ("c", "test", {"image": image["c"], "text": ("A caption\nover two lines", "Last .")}),
    ]


def test_csv_with_text_only(tmp_path):
    manifest = tmp_path / "texts.csv"
    manifest.write_text("id,text\nx,One .\ny,Two .\nx,Three .\n")
    dataset = load_manifest(manifest)
    assert [(item.id, item.values) for item in dataset.items] == [
        ("x", {"text": ("One .", "Three .")}),
        ("y", {"text": ("Two .",)}),
    ]


JSONL_ERRORS = [
    ('{"id": "a", "text": "ok"}\n{"id": "b", "text": "ok",}\n', 2, "invalid JSON"),
    ('["a", "b"]\n', 1, "expected a JSON object, got list"),
    ('{"text": "ok"}\n', 1, "missing or empty id"),
    ('{"id": "  ", "text": "ok"}\n', 1, "missing or empty id"),
    ('{"id": 7, "text": "ok"}\n', 1, "'id' must be a string, got 7"),
    ('{"id": "a", "text": "ok"}\n\n{"id": "a", "text": "again"}\n', 3, r"duplicate id 'a' \(first on line 1\)"),
    ('{"id": "a", "text": ""}\n', 1, "empty caption for item 'a'"),
    ('{"id": "a", "texts": ["ok", " \\t "]}\n', 1, "empty caption for item 'a'"),
    ('{"id": "a", "texts": "one caption"}\n', 1, "'texts' must be a list of strings"),
    ('{"id": "a", "texts": ["ok", 3]}\n', 1, "'texts' must be a list of strings"),
    ('{"id": "a", "text": ["ok"]}\n', 1, "'text' must be a string"),
    ('{"id": "a", "text": "ok", "texts": ["ok"]}\n', 1, "give either 'text' or 'texts', not both"),
    ('{"id": "a", "split": "train"}\n', 1, "item 'a' has no value of any modality"),
    ('{"id": "a", "split": "", "text": "ok"}\n', 1, "empty split for item 'a'"),
    ('{"id": "a", "image": "imgs/missing.jpg"}\n', 1, "image file not found: .*missing\\.jpg"),
    ('{"id": "a", "image": "imgs/a.jpg"}\n{"id": "b", "image": "imgs/bad.jpg"}\n', 2, "cannot read image .*bad\\.jpg"),
    (
        '{"id": "a", "image": "imgs/a.jpg"}\n{"id": "b", "image": "imgs/half.jpg"}\n',
        2,
        "cannot read image .*half\\.jpg: .*truncated",
    ),
]


@pytest.mark.data
@pytest.mark.parametrize(("content", "line", "message"), JSONL_ERRORS)
def test_jsonl_errors(root, content, line, message):
    manifest = root / "broken.jsonl"
    manifest.write_text(content)
    with pytest.raises(DataError, match=located(manifest, line, message)):
        load_manifest(manifest)


CSV_ERRORS = [
    ("image,text\nimgs/a.jpg,ok\n", 1, "header must name 'id'"),
    ("id,split,caption\na,train,ok\n", 1, "unknown key 'caption'"),
    ("id,split\na,train\n", 1, "header must name 'id' and at least one modality"),
    ("id,text\na,ok\nb,ok,extra\n", 3, "expected 2 fields like the header, got 3"),
    ("id,text\na,ok\n,ok\n", 3, "missing or empty id"),
    ("id,text\na,ok\na, \n", 3, "empty caption for item 'a'"),
    ("id,image,text\na,imgs/a.jpg,ok\na,,ok\n", 3, "empty image path for item 'a'"),
    (
        "id,image,text\na,imgs/a.jpg,ok\nb,imgs/b.jpg,ok\na,imgs/c.jpg,more\n",
        4,
        r"item 'a': image '.*c\.jpg' differs from '.*a\.jpg' on line 2",
    ),
    ("id,split,text\na,train,ok\na,test,more\n", 3, "item 'a': split 'test' differs from 'train' on line 2"),
    ("id,image,text\na,imgs/a.jpg,ok\nb,imgs/gone.jpg,ok\n", 3, "image file not found: .*gone"),
    ("id,image\nb,imgs/bad.jpg\n", 2, "cannot read image .*bad\\.jpg: not a recognised"),
]


@pytest.mark.data
@pytest.mark.parametrize(("content", "line", "message"), CSV_ERRORS)
def test_csv_errors(root, content, line, message):
    manifest = root / "broken.csv"
    manifest.write_text(content)
    with pytest.raises(DataError, match=located(manifest, line, message)):
        load_manifest(manifest)


def test_empty_csv_has_no_header(tmp_path):
    manifest = tmp_path / "empty.csv"
    manifest.write_text("")
    with pytest.raises(DataError, match=located(manifest, 1, "header must name 'id'")):
        load_manifest(manifest)


def test_not_utf8(tmp_path):
    manifest = tmp_path / "latin1.jsonl"
    manifest.write_bytes('{"id": "é", "text": "ok"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=re.escape(f"{manifest}: not UTF-8 text")):
        load_manifest(manifest)


def test_unsupported_extension(tmp_path):
    message = r"unsupported manifest format '\.txt'; expected \.jsonl or \.csv"
    with pytest.raises(DataError, match=message):
        load_manifest(tmp_path / "mine.txt")


def test_missing_manifest(tmp_path):
    with pytest.raises(DataError, match="manifest file not found: .*mine\\.jsonl"):
        load_manifest(tmp_path / "mine.jsonl")
