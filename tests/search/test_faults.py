"""Faults: writers killed at each stage of a save, concurrent writers, corrupted index files.

The index of these tests is a gallery of texts (a model's text side): real encoders, real
files, real processes killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xmodal.search import Searcher, items_from_texts
from xmodal.search.storage import FAILPOINT_ENV, SAVE_STAGES, current_generation
from xmodal.store import EmbeddingStore

QUERIES = ["a dog runs on the grass", "children play in the water", "a man rides a bike"]


@pytest.fixture
def texts_index(small_model, cache_dir, models_dir, tmp_path) -> Path:
    """An index of 12 texts in the small model's space, saved under tmp_path/index."""
    lines = [f"a photo number {i} of a {animal}" for i, animal in enumerate(["dog", "cat", "horse"] * 4)]
    (tmp_path / "base.txt").write_text("\n".join(lines) + "\n")
    items = items_from_texts(tmp_path / "base.txt")
    built = Searcher.build(items, small_model, modality="text", store=EmbeddingStore(cache_dir), models_dir=models_dir)
    return built.save(tmp_path / "index")


def _results(path: Path, models_dir: Path) -> list[list[tuple[str, float]]]:
    index = Searcher.load(path, models_dir=models_dir)
    return [[(h.id, round(h.score, 6)) for h in index.search(q, k=5)] for q in QUERIES]


@pytest.mark.data
@pytest.mark.weights
@pytest.mark.parametrize("stage", SAVE_STAGES)
def test_a_writer_killed_at_any_stage_leaves_a_whole_index(texts_index, models_dir, cache_dir, tmp_path, stage):
    before = _results(texts_index, models_dir)
    (tmp_path / "new.txt").write_text("a black dog jumps\na white cat sleeps\n")
    command = [sys.executable, "-m", "xmodal.cli", "index", "add", str(texts_index), str(tmp_path / "new.txt"),
               "--models", str(models_dir), "--cache", str(cache_dir)]  # fmt: skip
    env = {**os.environ, FAILPOINT_ENV: f"index-save:{stage}"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    index = Searcher.load(texts_index, models_dir=models_dir)  # whole, whichever generation is current
    if stage == "switched":
        assert len(index) == 14 and {"new:1", "new:2"} <= {item.id for item in index.items}
    else:
        assert len(index) == 12 and _results(texts_index, models_dir) == before
    # the next writer finishes the job and cleans up what the killed one left
    with Searcher.updating(texts_index, models_dir=models_dir) as grown:
        if len(grown) == 12:
            grown.add(items_from_texts(tmp_path / "new.txt"), store=EmbeddingStore(cache_dir))
    assert len(Searcher.load(texts_index, models_dir=models_dir)) == 14
    assert not list((texts_index / "generations").glob(".*.tmp"))


ADDER = """
    import os, sys
    from xmodal.search import Searcher, items_from_texts
    from xmodal.store import EmbeddingStore
    with Searcher.updating(os.environ["INDEX"], models_dir=os.environ["MODELS"]) as index:
        index.add(items_from_texts(sys.argv[1]), store=EmbeddingStore(os.environ["CACHE"]))
"""


@pytest.mark.data
@pytest.mark.weights
def test_concurrent_adds_lose_nothing(texts_index, models_dir, cache_dir, tmp_path):
    env = {**os.environ, "INDEX": str(texts_index), "MODELS": str(models_dir), "CACHE": str(cache_dir)}
    processes = []
    for writer in range(5):
        texts = tmp_path / f"w{writer}.txt"
        texts.write_text("".join(f"writer {writer} caption {line}\n" for line in range(3)))
        command = [sys.executable, "-c", textwrap.dedent(ADDER), str(texts)]
        processes.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    ids = [item.id for item in Searcher.load(texts_index, models_dir=models_dir).items]
    assert len(ids) == len(set(ids)) == 12 + 5 * 3
    assert {f"w{w}:{line}" for w in range(5) for line in (1, 2, 3)} <= set(ids)


def _corrupt_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.data
@pytest.mark.weights
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda g: _corrupt_byte(g / "faiss.index"), "faiss.index: corrupt"),
        (lambda g: (g / "embeddings.npy").write_bytes(b""), "embeddings.npy: corrupt"),
        (lambda g: _corrupt_byte(g / "model.npz"), "model.npz: corrupt"),
        (lambda g: (g / "items.parquet").unlink(), "items.parquet: missing from the index"),
        (lambda g: (g / "manifest.json").write_text('{"format": "xmodal-index/2"'), "not a readable index manifest"),
        (
            lambda g: (g / "manifest.json").write_text(json.dumps({"format": "xmodal-index/2", "count": "12"})),
            "field 'modality' missing or not a str",
        ),
        (lambda g: (g.parent.parent / "CURRENT").write_text("g999999\n"), "names generation 'g999999'"),
        (lambda g: (g.parent.parent / "CURRENT").write_text("../../etc\n"), "names generation '../../etc'"),
    ],
)
def test_damaged_index_files_are_refused_by_name(texts_index, models_dir, damage, message, xmodal):
    damage(current_generation(texts_index))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        Searcher.load(texts_index, models_dir=models_dir)
    ran = xmodal("search", texts_index, "a dog", "--models", models_dir)
    assert ran.exit_code == 2 and "error:" in ran.output and "Traceback" not in ran.output


@pytest.mark.data
@pytest.mark.weights
def test_an_index_naming_model_files_elsewhere_needs_trust(flickr8k, minilm, cache_dir, models_dir, tmp_path, xmodal):
    from xmodal.align import CCAAligner
    from xmodal.data import PairedDataset
    from xmodal.model import fit_model

    train = PairedDataset("small", flickr8k.split("train").items[:40])
    encoders = {"text": f"st:{minilm.path}", "image": "efficientnet-lite0"}  # a folder outside models_dir
    model = fit_model(train, CCAAligner(n_components=8), EmbeddingStore(cache_dir), encoders=encoders,
                      models_dir=models_dir, progress=False)  # fmt: skip
    (tmp_path / "t.txt").write_text("a dog\na cat\n")
    index = Searcher.build(items_from_texts(tmp_path / "t.txt"), model, modality="text",
                           store=EmbeddingStore(cache_dir), models_dir=models_dir).save(tmp_path / "index")  # fmt: skip
    with pytest.raises(ValueError, match=f"loads {minilm.path}, outside the models folder .* --trust"):
        Searcher.load(index, models_dir=models_dir)
    assert len(Searcher.load(index, models_dir=models_dir, trust=True)) == 2
    refused = xmodal("search", index, "a dog", "--models", models_dir)
    assert refused.exit_code == 2 and "--trust" in refused.output
    assert xmodal("search", index, "a dog", "-k", "2", "--models", models_dir, "--trust").exit_code == 0
