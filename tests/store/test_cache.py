"""The embedding cache: keyed per value by content, so only what is new is encoded, and an
interrupted encode resumes after its last whole chunk."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from xmodal.encoders import get_encoder
from xmodal.store import EmbeddingStore, cache, item_keys


class Counting:
    """A text encoder with known outputs (a fixed function of the text) that counts what it encodes."""

    name = "counting"
    modality = "text"
    dim = 4
    cache_key = "counting|v1"

    def __init__(self, fail_after: int | None = None):
        self.encoded: list[str] = []
        self.fail_after = fail_after

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if self.fail_after is not None and len(self.encoded) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.encoded += values
        return np.array([expected(v) for v in values], np.float32)


def expected(text: str) -> np.ndarray:
    return np.frombuffer(hashlib.sha256(text.encode()).digest()[:16], np.uint8).astype(np.float32).reshape(4, 4).sum(1)


def texts(n: int, start: int = 0) -> list[str]:
    return [f"caption {i}" for i in range(start, start + n)]


def test_rows_are_the_encoders_and_a_second_store_encodes_nothing(tmp_path):
    encoder = Counting()
    first = EmbeddingStore(tmp_path).embed(encoder, texts(5))
    np.testing.assert_array_equal(first, [expected(t) for t in texts(5)])
    store = EmbeddingStore(tmp_path)
    again = store.embed(Counting(), texts(5)[::-1])  # any order, any subset
    np.testing.assert_array_equal(again, first[::-1])
    assert (store.hits, store.misses) == (5, 0)
    (folder,) = (tmp_path / "embeddings" / "counting").iterdir()
    assert json.loads((folder / "encoder.json").read_text())["cache_key"] == "counting|v1"
    assert len(list(folder.glob("*.npz"))) == 1 and not list(folder.glob(".*"))  # no temporary file left


def test_adding_values_encodes_only_the_new_ones(tmp_path):
    EmbeddingStore(tmp_path).embed(Counting(), texts(1000))
    encoder, store = Counting(), EmbeddingStore(tmp_path)
    rows = store.embed(encoder, texts(1010))
    assert encoder.encoded == texts(10, start=1000) and (store.hits, store.misses) == (1000, 10)
    np.testing.assert_array_equal(rows[-10:], [expected(t) for t in texts(10, start=1000)])


def test_repeated_values_are_encoded_once(tmp_path):
    encoder, store = Counting(), EmbeddingStore(tmp_path)
    rows = store.embed(encoder, ["a", "b", "a", "a"])
    assert encoder.encoded == ["a", "b"] and store.misses == 2
    np.testing.assert_array_equal(rows[0], rows[3])


def test_an_interrupted_encode_resumes_after_its_last_whole_chunk(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        EmbeddingStore(tmp_path, chunk_rows=7).embed(Counting(fail_after=14), texts(20))
    folder = next((tmp_path / "embeddings" / "counting").iterdir())
    assert len(list(folder.glob("*.npz"))) == 2  # two chunks of 7 were written before the interruption
    encoder, store = Counting(), EmbeddingStore(tmp_path, chunk_rows=7)
    rows = store.embed(encoder, texts(20))
    assert encoder.encoded == texts(6, start=14) and (store.hits, store.misses) == (14, 6)
    np.testing.assert_array_equal(rows, [expected(t) for t in texts(20)])


def test_a_one_file_cache_of_the_first_format_is_served_row_for_row(tmp_path):
    """Caches written before per-item keys hold one file per ordered list; its rows are returned
    unchanged (even where a per-value encode would differ in the last bits)."""
    values = texts(3)
    _, whole = item_keys(Counting.cache_key, values, "text")
    old = np.arange(12, dtype=np.float32).reshape(3, 4)
    (tmp_path / "embeddings" / "counting").mkdir(parents=True)
    np.save(tmp_path / "embeddings" / "counting" / f"{whole[:32]}.npy", old)
    encoder, store = Counting(), EmbeddingStore(tmp_path)
    np.testing.assert_array_equal(store.embed(encoder, values), old)
    assert encoder.encoded == [] and store.hits == 3
    assert store.embed(encoder, values[:2]).tolist() == [expected(t).tolist() for t in values[:2]]  # another list


def test_keys_follow_content_not_order_or_path(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"same bytes")
    (tmp_path / "b.jpg").write_bytes(b"same bytes")
    (tmp_path / "c.jpg").write_bytes(b"other bytes")
    keys, _ = item_keys("enc", [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg")], "image")
    assert keys[0] == keys[1] != keys[2]
    assert item_keys("enc", ["x", "y"], "text")[0] == item_keys("enc", ["y", "x"], "text")[0][::-1]
    assert item_keys("enc", ["x"], "text")[0] != item_keys("other", ["x"], "text")[0]
    with pytest.raises(FileNotFoundError, match="cannot read image file .*nothing.jpg"):
        item_keys("enc", [str(tmp_path / "nothing.jpg")], "image")


@pytest.mark.weights
def test_a_cache_hit_does_not_load_the_model(tmp_path, minilm):
    values = ["A cat sleeps .", "A dog runs ."]
    first = EmbeddingStore(tmp_path).embed(minilm, values)
    fresh = get_encoder("minilm", models_dir=tmp_path)
    store = EmbeddingStore(tmp_path)
    np.testing.assert_array_equal(store.embed(fresh, values), first)
    assert store.hits == 2 and "model" not in vars(fresh)


@pytest.mark.data
@pytest.mark.weights
def test_a_renamed_image_is_a_hit_and_an_edited_one_a_miss(tmp_path, lite0_onnx, flickr8k):
    original = flickr8k.split("test").items[0].values["image"][0]
    copy = tmp_path / "renamed.jpg"
    shutil.copy(original, copy)
    store = EmbeddingStore(tmp_path)
    store.embed(lite0_onnx, [original])
    store.embed(lite0_onnx, [str(copy)])
    assert (store.hits, store.misses) == (1, 1)
    copy.write_bytes(copy.read_bytes() + b"\0")
    store.embed(lite0_onnx, [str(copy)])
    assert store.misses == 2


@pytest.mark.data
@pytest.mark.weights
def test_concatenation_caches_each_part(tmp_path, lite0_onnx, flickr8k):
    paths = [item.values["image"][0] for item in flickr8k.split("test").items[:2]]
    store = EmbeddingStore(tmp_path)
    store.embed(lite0_onnx, paths)
    both = get_encoder("efficientnet-lite0+efficientnet-lite1", models_dir=tmp_path)
    emb = store.embed(both, paths)
    assert emb.shape == (2, 2560)
    assert (store.hits, store.misses) == (2, 4)  # lite0's 2 from the cache, lite1's 2 encoded


@pytest.mark.weights
def test_missing_image_is_reported_before_encoding(tmp_path, lite0_onnx):
    with pytest.raises(FileNotFoundError, match="cannot read image file .*nothing.jpg"):
        EmbeddingStore(tmp_path).embed(lite0_onnx, [str(tmp_path / "nothing.jpg")])


def _chunks(root) -> list:
    (folder,) = (root / "embeddings" / "counting").iterdir()
    return sorted(folder.glob("*.npz"))


def test_a_chunk_with_wrong_rows_is_reported_moved_aside_and_encoded_again(tmp_path, caplog):
    EmbeddingStore(tmp_path, chunk_rows=4).embed(Counting(), texts(8))
    _, second = _chunks(tmp_path)
    with np.load(second) as chunk:  # the same shape, other values, the old checksum
        tampered = {name: chunk[name] for name in chunk.files}
    tampered["rows"] = np.random.default_rng(0).normal(size=tampered["rows"].shape).astype(np.float32)
    np.savez(second, **tampered)
    encoder, store = Counting(), EmbeddingStore(tmp_path, chunk_rows=4)
    rows = store.embed(encoder, texts(8))
    np.testing.assert_array_equal(rows, [expected(t) for t in texts(8)])  # never the random rows
    assert len(encoder.encoded) == 4 and (store.hits, store.misses) == (4, 4)  # only the tampered chunk
    assert f"embedding cache file {second} is corrupt" in caplog.text
    assert second.with_name(second.name + ".corrupt").is_file()


@pytest.mark.parametrize("damage", [lambda p: p.write_bytes(b""), lambda p: p.write_bytes(p.read_bytes()[:100])])
def test_an_unreadable_chunk_is_reported_and_encoded_again(tmp_path, caplog, damage):
    EmbeddingStore(tmp_path, chunk_rows=4).embed(Counting(), texts(8))
    damaged = _chunks(tmp_path)[0]
    damage(damaged)
    encoder = Counting()
    rows = EmbeddingStore(tmp_path, chunk_rows=4).embed(encoder, texts(8))
    np.testing.assert_array_equal(rows, [expected(t) for t in texts(8)])
    assert len(encoder.encoded) == 4 and f"embedding cache file {damaged} is unreadable" in caplog.text


def test_an_unreadable_one_file_cache_is_skipped_with_a_warning(tmp_path, caplog):
    values = texts(3)
    _, whole = item_keys(Counting.cache_key, values, "text")
    legacy = tmp_path / "embeddings" / "counting" / f"{whole[:32]}.npy"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"\x93NUMPY truncated")
    encoder = Counting()
    rows = EmbeddingStore(tmp_path).embed(encoder, values)
    np.testing.assert_array_equal(rows, [expected(t) for t in values])
    assert encoder.encoded == values and f"embedding cache file {legacy} is unreadable" in caplog.text


def test_a_one_file_cache_damaged_after_its_first_read_is_skipped(tmp_path, caplog):
    """The first read records the old file's checksum; rows overwritten later (same shape)
    are caught and encoded again instead of served."""
    values = texts(3)
    _, whole = item_keys(Counting.cache_key, values, "text")
    legacy = tmp_path / "embeddings" / "counting" / f"{whole[:32]}.npy"
    legacy.parent.mkdir(parents=True)
    np.save(legacy, np.array([expected(t) for t in values], np.float32))
    assert EmbeddingStore(tmp_path).embed(Counting(), values).shape == (3, 4)
    assert legacy.with_name(legacy.name + ".sha256").is_file()
    np.save(legacy, np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    encoder = Counting()
    rows = EmbeddingStore(tmp_path).embed(encoder, values)
    np.testing.assert_array_equal(rows, [expected(t) for t in values])
    assert encoder.encoded == values and f"embedding cache file {legacy} is corrupt" in caplog.text


class FileBytes:
    """An image encoder with known outputs (a fixed function of the file's bytes) that counts what it encodes."""

    name = "file-bytes"
    modality = "image"
    dim = 4
    cache_key = "file-bytes|v1"

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.encoded += values
        return np.array([expected(Path(v).read_text()) for v in values], np.float32)


def image_files(folder: Path, n: int = 4) -> list[str]:
    for i in range(n):
        (folder / f"{i}.jpg").write_text(f"image {i}")
    return [str(folder / f"{i}.jpg") for i in range(n)]


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The files whose bytes the cache reads to key them."""
    seen: list[str] = []

    def counted(value: str, modality: str) -> bytes:
        seen.append(value)
        return content(value, modality)

    content = cache._content
    monkeypatch.setattr(cache, "_content", counted)
    return seen


@pytest.fixture
def settled(monkeypatch) -> None:
    """Files written by the test count as changed long enough ago to be remembered."""
    monkeypatch.setattr(cache, "RACY_NS", 0)


def test_unchanged_files_are_keyed_without_reading_them_again(tmp_path, reads, settled):
    paths = image_files(tmp_path)
    EmbeddingStore(tmp_path / "cache").embed(FileBytes(), paths)
    assert reads == paths and len(list((tmp_path / "cache" / cache.FILE_KEYS).glob("*.npz"))) == 1
    reads.clear()
    encoder, store = FileBytes(), EmbeddingStore(tmp_path / "cache")
    rows = store.embed(encoder, paths)
    np.testing.assert_array_equal(rows, [expected(f"image {i}") for i in range(4)])
    assert reads == [] and encoder.encoded == [] and store.hits == 4


def test_a_changed_or_replaced_file_is_read_and_encoded_again(tmp_path, reads, settled):
    paths = image_files(tmp_path)
    EmbeddingStore(tmp_path / "cache").embed(FileBytes(), paths)
    Path(paths[1]).write_text("edited image 1")  # a new size
    replacement = tmp_path / "new.jpg"  # same size and modification time, another inode
    replacement.write_text("image 9")
    os.utime(replacement, ns=(os.stat(paths[2]).st_atime_ns, os.stat(paths[2]).st_mtime_ns))
    replacement.replace(paths[2])
    reads.clear()
    encoder = FileBytes()
    rows = EmbeddingStore(tmp_path / "cache").embed(encoder, paths)
    np.testing.assert_array_equal(rows, [expected(t) for t in ("image 0", "edited image 1", "image 9", "image 3")])
    assert reads == paths and encoder.encoded == paths[1:3]


def test_files_changed_just_now_are_not_remembered(tmp_path, reads):
    paths = image_files(tmp_path)
    EmbeddingStore(tmp_path / "cache").embed(FileBytes(), paths)
    EmbeddingStore(tmp_path / "cache").embed(FileBytes(), paths)
    assert reads == paths + paths and not (tmp_path / "cache" / cache.FILE_KEYS).exists()


@pytest.mark.parametrize("damage", ["truncated", "other keys"])
def test_damaged_remembered_keys_are_not_used_and_are_written_again(tmp_path, reads, settled, damage):
    paths = image_files(tmp_path)
    EmbeddingStore(tmp_path / "cache").embed(FileBytes(), paths)
    (memo,) = (tmp_path / "cache" / cache.FILE_KEYS).glob("*.npz")
    if damage == "truncated":
        memo.write_bytes(memo.read_bytes()[:100])
    else:  # valid arrays, the old checksum
        with np.load(memo) as archive:
            arrays = {name: archive[name] for name in archive.files}
        arrays["keys"] = arrays["keys"][::-1].copy()
        np.savez(memo, **arrays)
    reads.clear()
    encoder = FileBytes()
    rows = EmbeddingStore(tmp_path / "cache").embed(encoder, paths)
    np.testing.assert_array_equal(rows, [expected(f"image {i}") for i in range(4)])
    assert reads == paths and encoder.encoded == []
    reads.clear()
    EmbeddingStore(tmp_path / "cache").embed(FileBytes(), paths)
    assert reads == []  # remembered again


def test_a_corrupt_chunk_is_caught_when_the_keys_are_remembered(tmp_path, caplog, settled):
    paths = image_files(tmp_path)
    EmbeddingStore(tmp_path / "cache").embed(FileBytes(), paths)
    (chunk,) = next((tmp_path / "cache" / "embeddings" / "file-bytes").iterdir()).glob("*.npz")
    with np.load(chunk) as archive:
        tampered = {name: archive[name] for name in archive.files}
    tampered["rows"] = tampered["rows"] + 1
    np.savez(chunk, **tampered)
    encoder = FileBytes()
    rows = EmbeddingStore(tmp_path / "cache").embed(encoder, paths)
    np.testing.assert_array_equal(rows, [expected(f"image {i}") for i in range(4)])
    assert encoder.encoded == paths and f"embedding cache file {chunk} is corrupt" in caplog.text
