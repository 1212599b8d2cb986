"""What int8 costs the image encoders (issue 16): EfficientNet-Lite in float (``efficientnet-liteN``,
ONNX Runtime) and quantised to int8 (``efficientnet-liteN-int8``: static QDQ, calibrated on
crops of scikit-learn's two sample photos; :mod:`xmodal.encoders.image`), in one run.

- Speed, warm (both loaded and run once first; a missing int8 file is made then, untimed), same
  batch size (64) and threads (ONNX Runtime's intra-op threads = torch's thread count), on the
  first ``--speed-images`` (256) Flickr8k test images: *network* = pre-decoded pixels through
  the model alone; *end to end* = ``encode(paths)``, JPEG decoding and resizing included. So
  that load from other processes falls on both alike, they take turns on each batch;
  images/s = images / summed seconds.
- Agreement: cosine of each int8 embedding with its float one over the 7,000 train and test
  images (min and mean).
- Retrieval: the Flickr8k protocol, ``cca-256-weighted`` fitted on the 30,000 train pairs with
  ``minilm`` text, scored on the 1k test split with CSLS k=10; embeddings through the cache.

    .venv/bin/python benchmarks/image_int8.py [--variants efficientnet-lite0 efficientnet-lite1 ...]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from xmodal.align.presets import make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.core.arrays import unit_rows
from xmodal.data import load_flickr8k
from xmodal.data.images import load_image
from xmodal.encoders import get_encoder
from xmodal.encoders.image import EfficientNetLiteEncoder, preprocess
from xmodal.evaluate import evaluate_bidirectional
from xmodal.store import EmbeddingStore, embed_split

COLUMNS = ("t2i/R@1", "t2i/R@5", "t2i/R@10", "i2t/R@1", "i2t/R@5", "i2t/R@10")
BATCH = 64


def _speeds(encoders: list[EfficientNetLiteEncoder], paths: list[str]) -> list[tuple[float, float]]:
    """(network, end-to-end) images/s of each encoder, warm, taking turns on each batch."""
    batches = [paths[i : i + BATCH] for i in range(0, len(paths), BATCH)]
    first = encoders[0]  # they prepare images alike: only the quantisation differs
    pixels = [
        np.stack([preprocess(load_image(p, first.background), first.resolution, first.fit, first.fill) for p in batch])
        for batch in batches
    ]
    for encoder in encoders:
        encoder.encode(batches[0])  # warm: loaded (int8 made on first use), one batch run
    network, whole = np.zeros(len(encoders)), np.zeros(len(encoders))
    for batch, batch_pixels in zip(batches, pixels, strict=True):
        for i, encoder in enumerate(encoders):
            start = time.perf_counter()
            encoder.forward(batch_pixels)
            network[i] += time.perf_counter() - start
            start = time.perf_counter()
            encoder.encode(batch, batch_size=BATCH)
            whole[i] += time.perf_counter() - start
    return [(len(paths) / n, len(paths) / w) for n, w in zip(network, whole, strict=True)]


def _efficientnet(name: str) -> EfficientNetLiteEncoder:
    encoder = get_encoder(name)
    if not isinstance(encoder, EfficientNetLiteEncoder):
        raise SystemExit(f"{name}: not a single EfficientNet-Lite encoder (-tta and @A,B average several)")
    return encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding flickr8k/")
    parser.add_argument("--variants", nargs="+", default=["efficientnet-lite0"], help="float image encoders")
    parser.add_argument("--speed-images", type=int, default=256, help="test images timed")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    dataset, store = load_flickr8k(args.data), EmbeddingStore()
    splits = {s: dataset.split(s) for s in ("train", "test")}
    paths = [item.values["image"][0] for item in splits["test"].items[: args.speed_images]]
    rows, notes = [], []
    for variant in args.variants:
        encoders = [_efficientnet(name) for name in (variant, f"{variant}-int8")]
        load = Path("/proc/loadavg").read_text().split()[0]
        speeds = _speeds(encoders, paths)
        load += f" → {Path('/proc/loadavg').read_text().split()[0]}"
        images, r10 = [], []
        for encoder, (network, whole) in zip(encoders, speeds, strict=True):
            embedded = {s: embed_split(split, store, "minilm", encoder, progress=False) for s, split in splits.items()}
            aligner = make_aligner("cca-256-weighted").fit(embedded["train"].training_pairs())
            test = embedded["test"]
            m = evaluate_bidirectional(
                aligner.transform(test.text, "text"), aligner.transform(test.image, "image"),
                test.text_items, test.image_items, csls_k=10,
            )  # fmt: skip
            images.append(np.concatenate([embedded[s].image for s in splits]))
            r10.append((m["t2i/R@10"], m["i2t/R@10"]))
            rows.append([f"`{encoder.name}`", *(f"{m[c]:.1f}" for c in COLUMNS), f"{network:.0f}", f"{whole:.0f}"])
            print(rows[-1], flush=True)
        cosine = (unit_rows(images[0]) * unit_rows(images[1])).sum(axis=1)
        (ft, fi), (qt, qi) = r10
        (fn, fw), (qn, qw) = speeds
        notes.append(
            f"- `{variant}`, int8 against float: t2i R@10 {qt - ft:+.1f}, i2t R@10 {qi - fi:+.1f}; "
            f"{qn / fn:.2f}× the images per second through the network, {qw / fw:.2f}× end to end; "
            f"cosine of int8 to float embeddings over {len(cosine):,} images: min {cosine.min():.4f}, "
            f"mean {cosine.mean():.4f}. Load average (1 min) over its timing: {load}."
        )
        print(notes[-1], flush=True)
    write_section(
        args.results,
        "image-int8",
        "int8 image encoders: their R@10 cost on Flickr8k (issue 16)",
        shlex.join(["python", "benchmarks/image_int8.py", *sys.argv[1:]]),
        markdown_table(
            ["image encoder", *COLUMNS, "images / s, network (warm)", "images / s, end to end (warm)"], rows
        ),
        "`cca-256-weighted` on 30,000 train pairs, minilm, 1k test split, CSLS k=10",
        notes=[
            *notes,
            f"- Speed on the first {len(paths)} test images, batch {BATCH}, float and int8 taking turns on each "
            "batch; network: pre-decoded pixels through ONNX Runtime; end to end: `encode(paths)`, JPEG decoding "
            "and resizing included. 2 CPUs shared with other jobs: compare the ratios, not the images/s of other runs.",
            "- int8: static QDQ (u8 activations, s8 weights per channel), min/max ranges from 128 seeded crops of "
            "scikit-learn's two sample photos; on 128 Flickr8k dev images dynamic quantisation of lite0's "
            "convolutions ran 10× slower than float with cosine 0.89 (mean), static QDQ 2× faster with 0.993.",
        ],
    )


if __name__ == "__main__":
    main()
