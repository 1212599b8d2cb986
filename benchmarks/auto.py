"""Small data: regularisation chosen by cross-validation (``xmodal fit --auto``) against the
fixed presets, at 100, 300 and 1,000 Flickr8k training pairs.

A budget of N pairs is N train images drawn with a seed, each with its first caption (so N
distinct items). Each preset is fitted as is, and again with ``auto=True`` (5-fold
cross-validation over the N items, through :func:`xmodal.model.fit_model`, the path of
``xmodal fit``); both are evaluated on the full 1k test split (5,000 captions, 1,000 images)
with the models' scoring (CSLS k=10). Figures are the mean over ``--seeds`` draws.

    .venv/bin/python benchmarks/auto.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from xmodal.align.presets import make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.data import Item, PairedDataset, load_flickr8k
from xmodal.evaluate import evaluate_bidirectional
from xmodal.model import fit_model
from xmodal.store import EmbeddingStore, embed_split

BUDGETS = (100, 300, 1000)
ALIGNERS = ("cca-256-weighted", "lstsq-t2i", "procrustes-t2i")
ENCODERS = {"text": "minilm", "image": "efficientnet-lite0"}


def budget(train: PairedDataset, n: int, seed: int) -> PairedDataset:
    """``n`` train items drawn with ``seed``, each with its first caption."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(train), size=n, replace=False))
    items = [train.items[i] for i in chosen]
    return PairedDataset(
        f"flickr8k-train-{n}",
        [Item(i.id, "train", {"image": i.values["image"], "text": i.values["text"][:1]}) for i in items],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="draws of the training pairs per budget")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()

    flickr = load_flickr8k(args.data)
    store = EmbeddingStore()
    test = embed_split(flickr.split("test"), store, ENCODERS["text"], ENCODERS["image"], progress=False)
    train = flickr.split("train")
    rows = []
    started = time.perf_counter()
    for n in BUDGETS:
        for name in ALIGNERS:
            scores: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            chosen: Counter[str] = Counter()
            seconds = 0.0
            for seed in range(args.seeds):
                data = budget(train, n, seed)
                for auto in (False, True):
                    fit_started = time.perf_counter()
                    model = fit_model(
                        data, make_aligner(name), store, encoders=ENCODERS, auto=auto, folds=args.folds, seed=seed,
                        progress=False,
                    )  # fmt: skip
                    if auto:
                        seconds += time.perf_counter() - fit_started
                        chosen[", ".join(f"{k}={v}" for k, v in model.about["auto"]["chosen"].items())] += 1
                    metrics = evaluate_bidirectional(
                        model.transform(test.text, "text"), model.transform(test.image, "image"),
                        test.text_items, test.image_items, csls_k=model.csls_k,
                    )  # fmt: skip
                    scores[auto].append((metrics["t2i/R@10"], metrics["i2t/R@10"]))
            fixed, tuned = (np.mean(scores[a], axis=0) for a in (False, True))
            spread = np.std([np.mean(s) for s in scores[True]]) if args.seeds > 1 else 0.0
            row = [
                str(n), f"`{name}`", f"{fixed[0]:.1f}", f"{fixed[1]:.1f}", f"{tuned[0]:.1f}", f"{tuned[1]:.1f}",
                f"{np.mean(tuned) - np.mean(fixed):+.1f} (±{spread:.1f})",
                "; ".join(f"{c} ×{k}" if k > 1 else c for c, k in chosen.most_common()), f"{seconds / args.seeds:.1f}",
            ]  # fmt: skip
            rows.append(row)
            print(" | ".join(row), flush=True)
    columns = [
        "pairs", "preset", "preset t2i R@10", "preset i2t R@10", "--auto t2i R@10", "--auto i2t R@10",
        "mean R@10 gain (sd over draws)", "chosen by --auto", "--auto fit s",
    ]  # fmt: skip
    write_section(
        args.results,
        "auto",
        "Small data: --auto (cross-validated regularisation) against the fixed presets",
        shlex.join(["python", "benchmarks/auto.py", *sys.argv[1:]]),
        markdown_table(columns, rows),
        f"minilm + efficientnet-lite0, {args.seeds} seeded draws of N train images with their first caption, "
        f"{args.folds}-fold CV (mean reciprocal rank both ways), evaluated on the 1k test split with CSLS k=10; "
        f"{time.perf_counter() - started:.0f} s in all",
    )


if __name__ == "__main__":
    main()
