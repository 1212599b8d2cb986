"""Closed-form fits from additive statistics on Flickr8k: shards, and updates with new pairs.

1. Every closed-form preset of ``make bench`` fitted twice on the 30,000 train pairs (minilm +
   efficientnet-lite0, cached embeddings): ``fit`` on all rows, and ``partial_fit`` over 10
   shards of 3,000 pairs (statistics added shard by shard); the 1k test split evaluated as
   ``xmodal bench flickr8k`` does (R@1/5/10 both ways, plain and CSLS k=10), every metric compared.
2. An incremental update: ``cca-256-weighted`` (the default) fitted with ``partial_fit`` on the
   first 29,000 pairs, saved and loaded, then the last 1,000 pairs added (their statistics and a
   new solve), against a full refit on the 30,000 in the same run (best of 3 each).

    .venv/bin/python benchmarks/statistics.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xmodal.align import Aligner
from xmodal.align.presets import ALIGNERS, make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.data import load_flickr8k
from xmodal.evaluate import evaluate_bidirectional
from xmodal.model import pair_training_set
from xmodal.store import EmbeddingStore, embed_split

SHARDS = 10
CSLS_K = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding flickr8k/")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    dataset = load_flickr8k(args.data)
    store = EmbeddingStore()
    _, training = pair_training_set(dataset, store, "minilm", "efficientnet-lite0", iterative=False, progress=False)
    test = embed_split(dataset.split("test"), store, "minilm", "efficientnet-lite0", progress=False)
    pairs = training.embeddings
    n = len(pairs["text"])
    shards = [{m: x[i * n // SHARDS : (i + 1) * n // SHARDS] for m, x in pairs.items()} for i in range(SHARDS)]

    def metrics(aligner: Aligner) -> dict[str, float]:
        text, image = aligner.transform(test.text, "text"), aligner.transform(test.image, "image")
        found: dict[str, float] = {}
        for k in (0, CSLS_K):
            scored = evaluate_bidirectional(text, image, test.text_items, test.image_items, csls_k=k)
            found.update({f"{name} (csls {k})": v for name, v in scored.items()})
        return found

    rows = []
    for name in (a for a in ALIGNERS if make_aligner(a).accepts({m: x.shape[1] for m, x in pairs.items()})):
        whole = metrics(make_aligner(name).fit(pairs))
        streamed = make_aligner(name)
        for shard in shards:
            streamed.partial_fit(shard)
        sharded = metrics(streamed)
        recall = [key for key in whole if "/R@" in key]
        same = sum(round(whole[k], 1) == round(sharded[k], 1) for k in recall)
        largest = max(abs(whole[k] - sharded[k]) for k in whole)
        rows.append([name, f"{same} of {len(recall)}", f"{largest:.3g}"])
        print(" | ".join(rows[-1]), flush=True)

    update = _update_timing(pairs)
    write_section(
        args.results,
        "statistics",
        "Statistics: fit vs partial_fit over 10 shards, and an incremental update (Flickr8k, minilm + efficientnet-lite0)",
        shlex.join(["python", "benchmarks/statistics.py", *sys.argv[1:]]),
        markdown_table(["aligner", "R@K equal as printed (1 decimal)", "largest difference, any metric"], rows),
        f"{n} train pairs in {SHARDS} shards; 1k test split, plain and CSLS k={CSLS_K}",
        notes=[
            "",
            f"Incremental update, `cca-256-weighted`: {update['fit']:.2f} s to refit on all {n} pairs; "
            f"{update['update']:.2f} s to add the last 1,000 pairs to a saved model fitted on the others "
            f"(statistics of the new pairs and a new solve; {update['fit'] / update['update']:.1f} times faster), "
            f"whose map equals the refit's to {update['difference']:.2g} (largest absolute difference of the "
            "test embeddings). Best of 3 runs each.",
        ],
    )


def _update_timing(pairs: dict[str, np.ndarray]) -> dict[str, float]:
    n = len(pairs["text"])
    old = {m: x[: n - 1000] for m, x in pairs.items()}
    new = {m: x[n - 1000 :] for m, x in pairs.items()}
    with tempfile.TemporaryDirectory() as folder:
        saved = make_aligner("cca-256-weighted").partial_fit(old).save(Path(folder) / "model")
        fit_times, update_times = [], []
        for _ in range(3):
            started = time.perf_counter()
            refit = make_aligner("cca-256-weighted").fit(pairs)
            fit_times.append(time.perf_counter() - started)
            loaded = Aligner.load(saved)
            started = time.perf_counter()
            loaded.partial_fit(new)
            update_times.append(time.perf_counter() - started)
    probe = pairs["text"][:1000]
    difference = float(np.abs(loaded.transform(probe, "text") - refit.transform(probe, "text")).max())
    return {"fit": min(fit_times), "update": min(update_times), "difference": difference}


if __name__ == "__main__":
    main()
