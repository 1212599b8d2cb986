"""What int8 costs in retrieval (issue 16): the Flickr8k benchmark protocol with the text
encoder in float (``minilm``, eager torch; ``minilm-onnx`` computes the same embeddings to
3e-7 and shares its cache) and quantised to int8 through ONNX Runtime (``minilm-onnx-int8``).

Both are fitted with ``cca-256-weighted`` on the 30,000 train pairs and scored on the 1k test
split with CSLS k=10, efficientnet-lite0 images; the text encode time of the 5,000 test
captions is measured warm in the same run.

    .venv/bin/python benchmarks/text_int8.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from xmodal.align.presets import make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.data import load_flickr8k
from xmodal.encoders import get_encoder
from xmodal.evaluate import evaluate_bidirectional
from xmodal.store import EmbeddingStore, embed_split

COLUMNS = ("t2i/R@1", "t2i/R@5", "t2i/R@10", "i2t/R@1", "i2t/R@5", "i2t/R@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding flickr8k/")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    dataset, store = load_flickr8k(args.data), EmbeddingStore()
    captions = [t for item in dataset.split("test").items for t in item.values["text"]]
    rows, r10 = [], {}
    for name in ("minilm-onnx", "minilm-onnx-int8"):
        encoder = get_encoder(name)
        encoder.encode(captions[:64])  # warm: loaded (exported on first use), one batch run
        start = time.perf_counter()
        encoder.encode(captions)
        seconds = time.perf_counter() - start
        train, test = (embed_split(dataset.split(s), store, name, "efficientnet-lite0", progress=False)
                       for s in ("train", "test"))  # fmt: skip
        aligner = make_aligner("cca-256-weighted").fit(train.training_pairs())
        m = evaluate_bidirectional(
            aligner.transform(test.text, "text"), aligner.transform(test.image, "image"),
            test.text_items, test.image_items, csls_k=10,
        )  # fmt: skip
        r10[name] = (m["t2i/R@10"], m["i2t/R@10"])
        rows.append([f"`{name}`", *(f"{m[c]:.1f}" for c in COLUMNS), f"{len(captions) / seconds:.0f}"])
        print(rows[-1], flush=True)
    (ft, fi), (qt, qi) = r10["minilm-onnx"], r10["minilm-onnx-int8"]
    write_section(
        args.results,
        "text-int8",
        "int8 text encoder: its R@10 cost on Flickr8k (issue 16)",
        shlex.join(["python", "benchmarks/text_int8.py", *sys.argv[1:]]),
        markdown_table(["text encoder", *COLUMNS, "test captions / s (warm)"], rows),
        "`cca-256-weighted` on 30,000 train pairs, efficientnet-lite0, 1k test split, CSLS k=10",
        notes=[
            f"- int8 against float: t2i R@10 {qt - ft:+.1f}, i2t R@10 {qi - fi:+.1f}; "
            f"{float(rows[1][-1]) / float(rows[0][-1]):.2f}× the captions per second.",
            "- `minilm-onnx` gives the embeddings of `minilm` (eager torch) to 3e-7 and shares its cache: its "
            "row is the float baseline. Images: section *image-int8*.",
        ],
    )


if __name__ == "__main__":
    main()
