"""Engines: a pass maps work over tasks in order, in this process or on a real local Ray
cluster, and encoding a split gives the same rows on either."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xmodal.store import LocalEngine, RayEngine, ShardError, encode_split, encode_to_shards, make_engine

N_ITEMS = 24  # a Flickr8k slice: 120 captions, 24 images


def worker_state() -> tuple[int, list[int]]:
    return os.getpid(), []


def square(state: tuple[int, list[int]], task: int) -> tuple[int, int, int]:
    pid, done = state
    done.append(task)
    return task * task, pid, len(done)


def test_the_local_engine_builds_its_state_once_and_keeps_task_order():
    results = list(LocalEngine().map(worker_state, square, list(range(7))))
    assert [r[0] for r in results] == [i * i for i in range(7)]
    assert [r[2] for r in results] == list(range(1, 8))  # one state for every task
    assert list(LocalEngine().map(worker_state, square, [])) == []


def test_a_ray_cluster_spreads_tasks_over_workers_and_keeps_task_order(ray_engine):
    results = list(ray_engine.map(worker_state, square, list(range(40))))
    assert [r[0] for r in results] == [i * i for i in range(40)]
    pids = {r[1] for r in results}
    assert len(pids) == 2 and os.getpid() not in pids  # both workers, neither of them this process
    per_worker = {pid: max(r[2] for r in results if r[1] == pid) for pid in pids}
    assert sum(per_worker.values()) == 40  # each worker built its state once and kept it


def test_engines_are_chosen_by_name():
    assert isinstance(make_engine("local"), LocalEngine)
    engine = make_engine("ray", workers=3)
    assert isinstance(engine, RayEngine) and engine.workers == 3
    with pytest.raises(ValueError, match="unknown engine 'spark'; choose one of local, ray"):
        make_engine("spark")
    with pytest.raises(ValueError, match="are options of --engine ray"):
        make_engine("local", workers=2)


@pytest.mark.data
@pytest.mark.weights
def test_ray_encodes_a_flickr8k_slice_into_the_same_rows_as_this_process(flickr8k, ray_engine, tmp_path):
    part = flickr8k.split("test").subset(N_ITEMS)
    encoders = {"text": "minilm", "image": "efficientnet-lite0"}
    local = encode_split(part, encoders, tmp_path / "local", shard_rows=16)
    ray = encode_split(part, encoders, tmp_path / "ray", shard_rows=16, engine=ray_engine)
    assert local.modalities == ray.modalities == ("text", "image")
    for m in local.modalities:
        assert local.shards[m].n_shards == -(-len(part.flatten(m).values) // 16)
        np.testing.assert_array_equal(local.shards[m].to_array(), ray.shards[m].to_array())
        np.testing.assert_array_equal(local.items[m], ray.items[m])
    assert len(local.shards["text"]) == 5 * N_ITEMS and local.shards["image"].dim == 1280
    t_rows, i_rows = local.pair_rows("text", "image")
    np.testing.assert_array_equal(local.items["text"][t_rows], local.items["image"][i_rows])


class Killed(LocalEngine):
    """This process, killed after ``after`` tasks; ``given`` counts the tasks it was given."""

    def __init__(self, after: int):
        self.after = after
        self.given = 0

    def map(self, setup, work, tasks):
        self.given += len(tasks)
        for done, result in enumerate(super().map(setup, work, tasks)):
            if done == self.after:
                raise KeyboardInterrupt("killed")
            yield result


@pytest.mark.weights
def test_an_interrupted_encode_resumes_after_its_last_whole_shard(tmp_path):
    captions = [f"a dog number {i} runs on the grass" for i in range(40)]
    whole = encode_to_shards("minilm", captions, tmp_path / "whole", shard_rows=16)
    with pytest.raises(KeyboardInterrupt):
        encode_to_shards("minilm", captions, tmp_path / "cut", shard_rows=16, engine=Killed(after=2))
    assert [p.name for p in sorted((tmp_path / "cut").iterdir())] == ["000000.npy", "000001.npy", "shards.json"]
    counting = Killed(after=99)
    resumed = encode_to_shards("minilm", captions, tmp_path / "cut", shard_rows=16, engine=counting)
    assert resumed.n_shards == 3 and counting.given == 1  # only the third shard was encoded
    np.testing.assert_array_equal(resumed.to_array(), whole.to_array())
    with pytest.raises(ShardError, match="holds other shards"):
        encode_to_shards("minilm", captions[:5], tmp_path / "cut", shard_rows=16)
