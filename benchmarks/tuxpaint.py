"""Tux Paint stamps, image <-> English description: what preparing transparent and SVG images takes.

About 950 clip-art stamps (PNG with transparency, or SVG only) with descriptions, from the
Debian package ``tuxpaint-stamps-default`` (``make tuxpaint`` fetches it by name with
``apt-get download`` and unpacks it with ``dpkg-deb -x``; nothing is committed). The manifest
(``xmodal.data.tuxpaint``: image, text.en/fr/de/es/ru, audio.*, label: the folder, seeded
70/30 split) is written next to the package, then image <-> English runs once per way of
preparing the images:

- ``efficientnet-lite0``: transparency flattened onto white (the default);
- ``efficientnet-lite0[background=none]``: the alpha channel dropped, as before (the colours
  hidden behind transparent pixels reach the encoder);
- ``efficientnet-lite0[fit=pad]``: flattened, and padded instead of centre-cropped.

    .venv/bin/python benchmarks/tuxpaint.py     (make bench-tuxpaint, which then runs
    `xmodal bench` on every modality pair of the manifest, with and without flattening)
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from xmodal.bench.matrix import run_matrix
from xmodal.bench.results import markdown_table, write_section
from xmodal.data import load_manifest
from xmodal.data.tuxpaint import write_tuxpaint_manifest

IMAGES = ["efficientnet-lite0", "efficientnet-lite0[background=none]", "efficientnet-lite0[fit=pad]"]
ALIGNERS = ["procrustes-t2i", "cca-128-weighted", "cca-256-weighted"]
COLUMNS = ("t2i/R@1", "t2i/R@5", "t2i/R@10", "i2t/R@1", "i2t/R@5", "i2t/R@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=Path(".cache/tuxpaint"), help="where `make tuxpaint` unpacked the package"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()

    manifest = args.root / "stamps.jsonl"
    counts = write_tuxpaint_manifest(args.root, manifest, seed=args.seed)
    print(f"{manifest}: {counts}", flush=True)
    dataset = load_manifest(manifest)
    rows = []
    for image in IMAGES:
        bench = run_matrix(dataset, {"text.en": "minilm", "image": image}, aligners=ALIGNERS, progress=False)
        for result in bench.results:
            t2i, i2t = result.pairs[("text.en", "image")], result.pairs[("image", "text.en")]
            cells = [t2i["R@1"], t2i["R@5"], t2i["R@10"], i2t["R@1"], i2t["R@5"], i2t["R@10"]]
            mean = (t2i["R@10"] + i2t["R@10"]) / 2
            rows.append([f"`{image}`", result.aligner, *(f"{c:.1f}" for c in cells), f"{mean:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
    write_section(
        args.results,
        "tuxpaint",
        f"Tux Paint stamps: image ↔ English description, by image preparation ({counts['test']} test stamps, CSLS k=10)",
        shlex.join(["python", "benchmarks/tuxpaint.py", *sys.argv[1:]]),
        markdown_table(["image encoder", "aligner", *COLUMNS, "mean R@10"], rows),
        f"{counts['items']} stamps ({counts['svg']} SVG only), seeded 70/30 split (seed {args.seed}), text minilm",
        notes=[
            "`background=none` drops the alpha channel unflattened (the colours hidden behind transparent",
            "pixels reach the encoder, as before this version); `fit=pad` pads to a square instead of cropping.",
        ],
    )


if __name__ == "__main__":
    main()
