"""Tux Paint stamps, image <-> English description: what preparing transparent and SVG images takes.

About 950 clip-art stamps (PNG with transparency, or SVG only) with a one-line English
description each, from the Debian package ``tuxpaint-stamps-default`` (fetched by name with
``apt-get download`` and unpacked with ``dpkg-deb -x``; nothing is committed). A JSONL
manifest (``image``, ``text``) is written with a seeded 70/30 train/test split, then the
text-image benchmark runs once per way of preparing the images:

- ``efficientnet-lite0``: transparency flattened onto white (the default);
- ``efficientnet-lite0[background=none]``: the alpha channel dropped, as before (the colours
  hidden behind transparent pixels reach the encoder);
- ``efficientnet-lite0[fit=pad]``: flattened, and padded instead of centre-cropped.

    .venv/bin/python benchmarks/tuxpaint.py     (make bench-tuxpaint)
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from xmodal.bench.pairs import run_pairs
from xmodal.bench.results import markdown_table, replace_section, script_section
from xmodal.data import load_manifest

PACKAGE = "tuxpaint-stamps-default"
IMAGES = ["efficientnet-lite0", "efficientnet-lite0[background=none]", "efficientnet-lite0[fit=pad]"]
ALIGNERS = ["procrustes-t2i", "cca-128-weighted", "cca-256-weighted"]
COLUMNS = ("t2i/R@1", "t2i/R@5", "t2i/R@10", "i2t/R@1", "i2t/R@5", "i2t/R@10")


def fetch(root: Path) -> Path:
    """The stamps folder of the package unpacked under ``root`` (downloaded once)."""
    stamps = root / "usr" / "share" / "tuxpaint" / "stamps"
    if not stamps.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", PACKAGE], cwd=root, check=True)
        (deb,) = root.glob(f"{PACKAGE}_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        deb.unlink()
    return stamps.resolve()


def write_manifest(stamps: Path, path: Path, seed: int) -> dict[str, int]:
    """One item per stamp with a description and an image (PNG, else SVG); 70/30 split drawn with ``seed``."""
    items = []
    for description in sorted(stamps.rglob("*.txt")):
        image = next(
            (p for p in (description.with_suffix(".png"), description.with_suffix(".svg")) if p.is_file()), None
        )
        lines = description.read_text(encoding="utf-8", errors="replace").splitlines()
        english = lines[0].strip() if lines else ""
        if image is not None and english:
            items.append(
                {"id": str(description.relative_to(stamps).with_suffix("")), "image": str(image), "text": english}
            )
    test = set(np.random.default_rng(seed).permutation(len(items))[: round(0.3 * len(items))].tolist())
    for i, item in enumerate(items):
        item["split"] = "test" if i in test else "train"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    svg = sum(item["image"].endswith(".svg") for item in items)
    return {"items": len(items), "test": len(test), "svg": svg}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=Path(".cache/xmodal/tuxpaint"), help="where the package is unpacked"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()

    manifest = args.root / "stamps.jsonl"
    counts = write_manifest(fetch(args.root), manifest, args.seed)
    print(f"{manifest}: {counts}", flush=True)
    dataset = load_manifest(manifest)
    rows = []
    for image in IMAGES:
        result = run_pairs(dataset, image_encoder=image, aligners=ALIGNERS, progress=False)
        for row in (r for r in result.rows if r.csls_k):
            mean = (row.metrics["t2i/R@10"] + row.metrics["i2t/R@10"]) / 2
            rows.append([f"`{image}`", row.aligner, *(f"{row.metrics[c]:.1f}" for c in COLUMNS), f"{mean:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
    body = script_section(
        f"Tux Paint stamps: image ↔ English description, by image preparation ({counts['test']} test stamps, CSLS k=10)",
        shlex.join(["python", "benchmarks/tuxpaint.py", *sys.argv[1:]]),
        markdown_table(["image encoder", "aligner", *COLUMNS, "mean R@10"], rows),
        f"{counts['items']} stamps ({counts['svg']} SVG only), seeded 70/30 split (seed {args.seed}), text minilm",
        notes=[
            "`background=none` drops the alpha channel unflattened (the colours hidden behind transparent",
            "pixels reach the encoder, as before this version); `fit=pad` pads to a square instead of cropping.",
        ],
    )
    replace_section(args.results, "tuxpaint", body)
    print(f"updated {args.results}")


if __name__ == "__main__":
    main()
