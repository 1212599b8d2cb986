"""Calibrated match probabilities on Flickr8k (issue 15): is a result's probability right?

The default model (``cca-256-weighted``, minilm + efficientnet-lite0, fitted on the train
split) is calibrated on the dev split (each query's top 10 results, per rank group) by each
method, then the expected calibration error (15 equal-width bins) is measured on the 1k test
split: over the top 10 results of every query, and over first results only (what a "no match
above p" threshold reads). For comparison, an uncalibrated reading of the score itself as a
probability (cosine clipped to [0, 1]).

    .venv/bin/python benchmarks/calibration.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from xmodal.align.presets import make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.data import load_flickr8k
from xmodal.model import calibrate_model, fit_model
from xmodal.model.calibrate import route_outcomes
from xmodal.retrieval.calibration import expected_calibration_error
from xmodal.store import EmbeddingStore, embed_modalities

ENCODERS = {"text": "minilm", "image": "efficientnet-lite0"}
TARGET = 0.05  # issue 15: ECE on held-out pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding flickr8k/")
    parser.add_argument("--aligner", default="cca-256-weighted")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    dataset, store = load_flickr8k(args.data), EmbeddingStore()
    model = fit_model(dataset, make_aligner(args.aligner), store, encoders=ENCODERS, progress=False)
    built = model.build_encoders()
    dev, test = (embed_modalities(dataset.split(s), store, built, progress=False) for s in ("dev", "test"))
    rows, worst, worst_first = [], 0.0, 0.0
    raw = {o.route: o for o in route_outcomes(model, test)}
    for route, outcomes in raw.items():
        clipped = np.clip(outcomes.scores, 0, 1)
        first = np.clip(outcomes.scores[:, 0], 0, 1)
        rows.append([route, "none (score as probability)", *_cells(outcomes.matches.mean(), clipped, outcomes.matches,
                                                                    first, outcomes.matches[:, 0])])  # fmt: skip
    for method in ("isotonic", "platt"):
        report = calibrate_model(model, dev, check=test, method=method)
        for route, r in report.items():
            if method == "isotonic":
                worst, worst_first = max(worst, r["ece_check"]), max(worst_first, r["ece_check_first"])
            rows.append([route, method, f"{100 * r['match_rate']:.1f} %", f"{r['ece_check']:.3f}",
                         f"{r['ece_check_first']:.3f}"])  # fmt: skip
            print(rows[-1], flush=True)
    verdict = "met" if max(worst, worst_first) <= TARGET else "not met"
    write_section(
        args.results,
        "calibration",
        "Calibrated match probabilities: expected calibration error on the Flickr8k 1k test split (issue 15)",
        shlex.join(["python", "benchmarks/calibration.py", *sys.argv[1:]]),
        markdown_table(["route", "calibration", "matches in top 10", "ECE, top 10", "ECE, first results"], rows),
        f"`{args.aligner}`, minilm + efficientnet-lite0, fitted on train; calibrated on dev (top 10 results "
        "per query, ranks 1, 2, 3-5 and 6+ apart); ECE over 15 equal-width bins on test",
        notes=[
            f"- Acceptance (ECE ≤ {TARGET} on held-out pairs): {verdict}; the largest isotonic ECE of a route is "
            f"{worst:.3f} over the top 10 results and {worst_first:.3f} over first results.",
            "- Calibrating each rank group apart matters: one curve for all ranks gave first results an ECE of "
            "0.09-0.11 (cosine routes), as a first result is a match more often than a later one of the same score.",
            "- `xmodal calibrate DATASET --model M --split dev --check test` stores the calibration in the model "
            "and prints these figures; `xmodal search` and the service then return `probability` beside each "
            "score, and `--min-probability` / `min_probability` keeps only likely matches.",
        ],
    )


def _cells(rate: float, p: np.ndarray, y: np.ndarray, p_first: np.ndarray, y_first: np.ndarray) -> list[str]:
    top = expected_calibration_error(p.ravel(), y.ravel())
    return [f"{100 * rate:.1f} %", f"{top:.3f}", f"{expected_calibration_error(p_first, y_first):.3f}"]


if __name__ == "__main__":
    main()
