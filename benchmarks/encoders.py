"""Which packaged encoders align best? Flickr8k 1k test, training-free, one run.

For each (text, image) encoder combination, fits the dev-chosen CCA presets on the 30,000
train pairs and reports R@1/R@10 with CSLS (k=10) in both directions, then writes the
``encoders`` section of RESULTS.md. Embeddings come from the cache (``make bench-best``
fills it; a missing one is encoded, which takes minutes for mpnet and the -tta views).

    .venv/bin/python benchmarks/encoders.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from xmodal.bench.pairs import run_flickr8k
from xmodal.bench.results import markdown_table, write_section

COMBINATIONS = [
    ("minilm", "efficientnet-lite0"),
    ("minilm", "efficientnet-lite0-tta"),
    ("minilm", "efficientnet-lite2"),
    ("mpnet", "efficientnet-lite0"),
    ("minilm", "efficientnet-lite0+efficientnet-lite1+efficientnet-lite2"),
    ("minilm+mpnet", "efficientnet-lite0+efficientnet-lite1+efficientnet-lite2"),
    ("minilm+mpnet", "efficientnet-lite0-tta+efficientnet-lite1-tta+efficientnet-lite2-tta"),
]
ALIGNERS = ["cca-256-weighted", "cca-384-wide"]
COLUMNS = ("t2i/R@1", "t2i/R@10", "i2t/R@1", "i2t/R@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()

    rows = []
    for text, image in COMBINATIONS:
        result = run_flickr8k(
            args.data, text_encoder=text, image_encoder=image, aligners=ALIGNERS, cache_dir=args.cache
        )
        for row in (r for r in result.rows if r.csls_k):
            rows.append(
                [
                    f"`{text}`",
                    f"`{image}`",
                    row.aligner,
                    *(f"{row.metrics[c]:.1f}" for c in COLUMNS),
                    f"{row.fit_seconds:.1f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)

    command = shlex.join(["python", "benchmarks/encoders.py", *sys.argv[1:]])
    write_section(
        args.results,
        "encoders",
        "Encoders: what each packaged encoder adds (Flickr8k 1k test, CSLS k=10)",
        command,
        markdown_table(["text", "image", "aligner", *COLUMNS, "fit s"], rows),
        notes=[
            "`a+b` concatenates L2-normalised embeddings; `-tta` averages an image's embedding",
            "with its mirror's. Presets were chosen on the dev split (see `xmodal/align/presets.py`).",
        ],
    )


if __name__ == "__main__":
    main()
