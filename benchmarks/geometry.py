"""Similarity functions x aligners, and the modality gap before/after each aligner (Flickr8k test).

Every aligner is fitted on the train split (heads: early stopping on dev); learned similarities
are trained on the train split mapped into each space. R@K with plain scores (no CSLS).

    .venv/bin/python benchmarks/geometry.py [--aligner NAME ...] [--learned mlp --learned bilinear]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from xmodal.analysis.compare import GAP_COLUMNS, gap_correlations, gap_row, similarity_rows
from xmodal.analysis.spaces import UNALIGNED, fit_spaces
from xmodal.bench.results import markdown_table, write_section
from xmodal.data import load_flickr8k
from xmodal.model import TrainingSet
from xmodal.retrieval import SIMILARITIES
from xmodal.store import EmbeddingStore, embed_split

ALIGNERS = [
    "lstsq-t2i",
    "lstsq-i2t",
    "procrustes-t2i",
    "procrustes-i2t",
    "procrustes-pca256",
    "cca-128",
    "cca-128-weighted",
    "cca-256-weighted",
    "cca-384-wide",
    "head-linear-cca",
    "head-mlp-cca",
    "head-gmlp-cca",
]
COLUMNS = ("t2i/R@1", "t2i/R@5", "t2i/R@10", "i2t/R@1", "i2t/R@5", "i2t/R@10")


def cosine_verdict(rows: list[dict]) -> str:
    """Which similarity has the best mean R@10 in each space, counted over the spaces."""
    by_space: dict[str, dict[str, float]] = {}
    for r in rows:
        by_space.setdefault(r["space"], {})[r["similarity"]] = (r["t2i/R@10"] + r["i2t/R@10"]) / 2
    fixed = [s for s in by_space.values() if "cosine" in s]
    best_fixed = sum(max(SIMILARITIES, key=lambda m: s[m]) == "cosine" for s in fixed)
    ties = sum(s["cosine"] == max(s[m] for m in SIMILARITIES) and s["cosine"] == s["dot"] for s in fixed)
    learned = {m for s in by_space.values() for m in s if m.startswith("learned")}
    beaten = {m: sum(s[m] > s["cosine"] for s in fixed if m in s) for m in sorted(learned)}
    counted = {m: sum(m in s for s in fixed) for m in sorted(learned)}
    text = (
        f"Cosine has the best mean R@10 of the fixed similarities in {best_fixed} of {len(fixed)} spaces "
        f"({ties} of them tied with dot, whose outputs are unit vectors)"
    )
    if learned:
        text += "; " + ", ".join(f"{m} beats cosine in {beaten[m]} of {counted[m]}" for m in beaten)
    return text + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aligner", action="append", dest="aligners")
    parser.add_argument("--learned", action="append", default=None, help="mlp, bilinear (default: both)")
    parser.add_argument("--text-encoder", default="minilm")
    parser.add_argument("--image-encoder", default="efficientnet-lite0")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()

    started = time.perf_counter()
    store, dataset = EmbeddingStore(args.cache), load_flickr8k(args.data)
    emb = {
        s: embed_split(dataset.split(s), store, args.text_encoder, args.image_encoder) for s in ("train", "dev", "test")
    }
    spaces = fit_spaces(args.aligners or ALIGNERS, TrainingSet.from_pairs(emb["train"], emb["dev"]))
    gaps = {space.name: gap_row(space.apply(emb["test"])) for space in spaces}
    correlations = gap_correlations({n: r for n, r in gaps.items() if n != UNALIGNED})
    learned = args.learned if args.learned is not None else ["mlp", "bilinear"]
    rows = similarity_rows(spaces, emb["train"], emb["test"], emb["dev"], learned=learned)
    seconds = time.perf_counter() - started

    command = shlex.join(["python", "benchmarks/geometry.py", *sys.argv[1:]])
    encoders = f"text {args.text_encoder}, image {args.image_encoder}"
    fit = {s.name: s.fit_seconds for s in spaces}
    similarity_table = markdown_table(
        ["aligner", "similarity", *COLUMNS, "mean R@10"],
        (
            [
                r["space"],
                r["similarity"],
                *(f"{r[c]:.1f}" for c in COLUMNS),
                f"{(r['t2i/R@10'] + r['i2t/R@10']) / 2:.1f}",
            ]
            for r in rows
        ),
    )
    shown = [c for c in GAP_COLUMNS if c not in ("t2i R@10", "i2t R@10")]
    gap_table = markdown_table(
        ["aligner", *shown, "fit s"],
        (
            [name, *(f"{row[c]:.3f}" if "R@10" not in c else f"{row[c]:.1f}" for c in shown), f"{fit[name]:.1f}"]
            for name, row in gaps.items()
        ),
    )
    correlation_table = markdown_table(
        ["measure vs mean R@10", "Pearson r", "Spearman ρ", "aligners"],
        ([m, f"{c['pearson']:.2f}", f"{c['spearman']:.2f}", c["n"]] for m, c in correlations.items()),
    )
    write_section(
        args.results,
        "similarities",
        f"Similarity functions × aligners (Flickr8k 1k test, {encoders}, no CSLS)",
        command,
        similarity_table,
        f"{seconds:.0f} s in all",
        notes=[
            "The unaligned space (`none`) compares 384-d text with 1280-d images: only the bilinear form can.",
            "Learned similarities are fitted on the 30,000 train pairs mapped into each space (early stopping on dev).",
            cosine_verdict(rows),
        ],
        announce=False,
    )
    write_section(
        args.results,
        "geometry",
        f"Modality gap and geometry before (`none`) and after each aligner (Flickr8k 1k test, {encoders})",
        command,
        gap_table + "\n\n" + correlation_table,
        notes=[
            "Unit rows throughout; `none` zero-pads the 384-d text next to the 1280-d images. Correlations are",
            "across the aligned rows (not `none`). Column definitions: `xmodal.analysis.compare.gap_row`.",
        ],
        announce=False,
    )
    out = Path("benchmarks/results/geometry.json")
    out.write_text(
        json.dumps({"command": command, "gaps": gaps, "correlations": correlations, "similarities": rows}, indent=1)
    )
    print(similarity_table, gap_table, correlation_table, cosine_verdict(rows), sep="\n\n")
    print(f"updated {args.results} and {out} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
