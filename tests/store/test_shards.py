"""Shard folders: rows written shard by shard, read back through memory maps in any order,
resumed after an interruption, and damage reported by file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmodal.store import ShardError, Shards, ShardWriter, write_shards


def rows(n: int, dim: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    x = rows(1000)
    write_shards(tmp_path / "s", [x[:300], x[300:301], x[301:700], x[700:]], about={"what": "test"})
    return tmp_path / "s", x


def test_every_way_of_reading_gives_the_rows_written(folder):
    path, x = folder
    shards = Shards(path)
    assert (len(shards), shards.dim, shards.n_shards, shards.about) == (1000, 6, 4, {"what": "test"})
    np.testing.assert_array_equal(shards.to_array(), x)
    np.testing.assert_array_equal(shards.rows(250, 720), x[250:720])
    np.testing.assert_array_equal(shards.rows(300, 301), x[300:301])
    ids = np.array([999, 0, 300, 301, 5, 700, 5])
    np.testing.assert_array_equal(shards.take(ids), x[ids])
    starts, blocks = zip(*shards.batches(rows=128))
    assert max(len(b) for b in blocks) == 128
    np.testing.assert_array_equal(np.concatenate(blocks), x)
    assert list(starts) == sorted(starts) and starts[0] == 0


def test_a_sample_is_seeded_and_in_row_order(folder):
    path, x = folder
    shards = Shards(path)
    one, again, other = shards.sample(50, seed=3), shards.sample(50, seed=3), shards.sample(50, seed=4)
    np.testing.assert_array_equal(one, again)
    assert not np.array_equal(one, other)
    where = [int(np.flatnonzero((x == r).all(axis=1))[0]) for r in one]
    assert where == sorted(where) and len(set(where)) == 50
    assert len(shards.sample(5000)) == 1000  # all rows when fewer


def test_a_writer_resumes_after_its_last_listed_shard_and_overwrites_nothing(tmp_path):
    x = rows(90)
    writer = ShardWriter(tmp_path / "s", 6, about={"values": 90})
    writer.write(x[:30])
    writer.write(x[30:60])  # the process "dies" here
    with pytest.raises(ShardError, match="already holds shards"):
        ShardWriter(tmp_path / "s", 6, about={"values": 90})
    with pytest.raises(ShardError, match="cannot resume"):
        ShardWriter(tmp_path / "s", 6, about={"values": 91}, resume=True)
    resumed = ShardWriter(tmp_path / "s", 6, about={"values": 90}, resume=True)
    assert (resumed.rows_written, resumed.n_shards) == (60, 2)
    resumed.write(x[60:])
    np.testing.assert_array_equal(Shards(tmp_path / "s").to_array(), x)
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_bad_rows_are_refused_before_anything_is_written(tmp_path):
    writer = ShardWriter(tmp_path / "s", 6)
    with pytest.raises(ShardError, match="holds 6-d rows, got 5-d"):
        writer.write(rows(4, dim=5))
    bad = rows(4)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in 1 row"):
        writer.write(bad)
    assert writer.n_shards == 0 and len(Shards(tmp_path / "s")) == 0


def test_damage_is_reported_with_the_file(folder):
    path, _ = folder
    shard = path / "000002.npy"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # one flipped bit in the rows
    shard.write_bytes(bytes(data))
    shards = Shards(path)  # the header and size are intact
    with pytest.raises(ShardError, match=f"shard {shard} is corrupt"):
        list(shards.batches())
    with pytest.raises(ShardError, match="000002.npy is corrupt"):
        shards.verify()
    shard.write_bytes(bytes(data[:-100]))
    with pytest.raises(ShardError, match="000002.npy is truncated"):
        Shards(path)
    shard.unlink()
    with pytest.raises(ShardError, match="000002.npy is missing"):
        Shards(path)


def test_a_folder_that_is_not_shards_is_named(tmp_path, folder):
    with pytest.raises(ShardError, match="is not a shard folder"):
        Shards(tmp_path / "nothing")
    path, _ = folder
    (path / "shards.json").write_text("{not json")
    with pytest.raises(ShardError, match="shards.json is unreadable"):
        Shards(path)
    (path / "shards.json").write_text(json.dumps({"format": "xmodal-shards/1", "dim": 6, "shards": [{"file": "../x"}]}))
    with pytest.raises(ShardError, match="malformed shard"):
        Shards(path)


def test_out_of_range_rows_are_refused(folder):
    shards = Shards(folder[0])
    with pytest.raises(ShardError, match=r"row ids must be in 0..999"):
        shards.take([1000])
    with pytest.raises(ShardError, match="outside"):
        shards.rows(10, 1001)
