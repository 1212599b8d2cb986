"""Tuning the image tower (issue 16): EfficientNet-Lite0's last two stages and head trained
contrastively against frozen caption embeddings, then used as an image view of the CCA.

The reverse of LiT (:mod:`xmodal.align.lit`): the text encoders stay locked, lite0's stage 6,
stage 7 and head (the blocks after its 14 x 14 maps, BatchNorm statistics frozen) learn with
symmetric InfoNCE through two linear projections started at ``cca-256-weighted`` of the untuned
features; one caption per image per batch, plain or mirrored view at random; the epoch with the
lowest dev loss is kept. The 14 x 14 maps of the frozen lower stages are computed once. Every
figure is on the **dev** split (1k images, 5,000 captions), CSLS k=10:

1. ``text-encoder`` x lite0 (head pool, mean of the plain and mirrored views), ``cca-256-weighted``,
   untuned against tuned;
2. the best row's encoders (``make bench-best-tuned``) with the tuned lite0 pool as one more
   image block, ``cca-384-wide``, against the row without it.

    .venv/bin/python benchmarks/image_tuning.py [--epochs 5] [--lr 3e-4] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import ImageOps

from xmodal.align.losses import symmetric_info_nce
from xmodal.align.presets import make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.core.arrays import unit_rows
from xmodal.data import load_flickr8k
from xmodal.data.images import DEFAULT_BACKGROUND, load_image
from xmodal.encoders.image import load_efficientnet_lite, preprocess
from xmodal.evaluate import evaluate_bidirectional
from xmodal.store import EmbeddingStore, embed_split

STAGES = "[features=stages]"
BEST_TEXT = "minilm-lit+mpnet-lit"
BEST_IMAGE = (
    f"efficientnet-lite0-tta@224,288,352,416{STAGES}+efficientnet-lite1-tta{STAGES}+efficientnet-lite2-tta{STAGES}"
)
TUNED_FROM = 192  # lite0's stage 6 (the first block of this width) and everything after it are tuned
METRICS = ("t2i/R@1", "t2i/R@5", "t2i/R@10", "i2t/R@1", "i2t/R@5", "i2t/R@10")


class Top(torch.nn.Module):
    """lite0 from its stage 6 on: 14 x 14 maps -> global average pool of the head."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        blocks = list(model._blocks)  # type: ignore[arg-type]
        first = [b._block_args.output_filters for b in blocks].index(TUNED_FROM)
        self.lower = blocks[:first]
        self.model = model
        self.blocks = torch.nn.ModuleList(blocks[first:])

    def bottom(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m._swish(m._bn0(m._conv_stem(x)))  # type: ignore[operator]
        for block in self.lower:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        m = self.model
        return m._swish(m._bn1(m._conv_head(x))).mean(dim=(2, 3))  # type: ignore[operator,no-any-return]


def lower_maps(top: Top, paths: list[str]) -> np.ndarray:
    """``(2, n, c, 14, 14)`` float16 maps of the frozen lower stages, plain and mirrored views."""
    out: np.ndarray | None = None
    for start in range(0, len(paths), 64):
        images = [load_image(p, DEFAULT_BACKGROUND) for p in paths[start : start + 64]]
        for view, flip in enumerate((False, True)):
            pixels = np.stack([preprocess(ImageOps.mirror(i) if flip else i, 224) for i in images])
            with torch.inference_mode():
                maps = top.bottom(torch.from_numpy(pixels)).numpy()
            if out is None:
                out = np.empty((2, len(paths), *maps.shape[1:]), np.float16)
            out[view, start : start + len(images)] = maps
    assert out is not None
    return out


def pooled(top: Top, maps: np.ndarray) -> np.ndarray:
    """Unit head pools, the mean of both views."""
    with torch.inference_mode():
        views = [
            np.concatenate(
                [top(torch.from_numpy(v[s : s + 256].astype(np.float32))).numpy() for s in range(0, len(v), 256)]
            )
            for v in maps
        ]
    return unit_rows(unit_rows(views[0]) + unit_rows(views[1]))


def scored(aligner_name: str, train: tuple[np.ndarray, np.ndarray, np.ndarray], dev: tuple[np.ndarray, ...]) -> dict:
    """Dev metrics (CSLS k=10) of ``aligner_name`` fitted on train (text, images, image of each caption)."""
    text, images, items = train
    aligner = make_aligner(aligner_name).fit({"text": text, "image": images[items]})
    dev_text, dev_images, dev_items = dev
    return evaluate_bidirectional(
        aligner.transform(dev_text, "text"), aligner.transform(dev_images, "image"), dev_items,
        np.arange(len(dev_images)), csls_k=10,
    )  # fmt: skip


def tune(
    top: Top,
    maps: dict[str, np.ndarray],
    text: dict[str, np.ndarray],
    items: dict[str, np.ndarray],
    untuned_train: np.ndarray,
    args: argparse.Namespace,
) -> list[tuple[int, float, float, float]]:
    """Train ``top`` in place from the CCA of its untuned train pools (``untuned_train``); returns
    ``(epoch, train loss, dev loss, seconds)`` per epoch."""
    start = make_aligner("cca-256-weighted").fit({"text": text["train"], "image": untuned_train[items["train"]]})
    projections = {}
    for modality, dim in (("text", text["train"].shape[1]), ("image", 1280)):
        weight, bias = start.affine(modality)  # type: ignore[attr-defined]
        layer = torch.nn.Linear(dim, weight.shape[1])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight.T.astype(np.float32)))
            layer.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        projections[modality] = layer
    scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.05))))
    for p in top.model.parameters():
        p.requires_grad_(False)
    for p in top.blocks.parameters():
        p.requires_grad_(True)
    head = [top.model._conv_head, top.model._bn1]
    for layer in head:
        for p in layer.parameters():  # type: ignore[attr-defined]
            p.requires_grad_(True)
    tuned = [*top.blocks.parameters(), *(p for layer in head for p in layer.parameters())]  # type: ignore[attr-defined]
    heads = [*projections["text"].parameters(), *projections["image"].parameters(), scale]
    optimiser = torch.optim.AdamW([{"params": tuned, "lr": args.lr}, {"params": heads, "lr": 1e-4}], weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    groups = {s: [np.flatnonzero(items[s] == i) for i in range(maps[s].shape[1])] for s in maps}

    def loss(split: str, rows: np.ndarray, views: np.ndarray, pick: Callable[[np.ndarray], int]) -> torch.Tensor:
        captions = np.array([pick(groups[split][i]) for i in rows])
        image = torch.nn.functional.normalize(top(torch.from_numpy(maps[split][views, rows].astype(np.float32))), dim=1)
        a = torch.nn.functional.normalize(projections["image"](image), dim=1)
        b = torch.nn.functional.normalize(projections["text"](torch.from_numpy(text[split][captions])), dim=1)
        return symmetric_info_nce(a, b, scale)

    def dev_loss() -> float:
        fixed = np.random.default_rng(args.seed + 1)
        rows = np.arange(maps["dev"].shape[1])
        with torch.no_grad():
            return float(
                np.mean([loss("dev", r, np.zeros(len(r), int), fixed.choice).item() for r in np.array_split(rows, 4)])
            )

    best, state, history = dev_loss(), copy.deepcopy(top.state_dict()), []
    history.append((0, float("nan"), best, 0.0))
    for epoch in range(1, args.epochs + 1):
        started, losses = time.perf_counter(), []
        order = rng.permutation(maps["train"].shape[1])
        for s in range(0, len(order) - args.batch_size + 1, args.batch_size):
            rows = order[s : s + args.batch_size]
            value = loss("train", rows, rng.integers(0, 2, len(rows)), rng.choice)
            optimiser.zero_grad()
            value.backward()
            optimiser.step()
            losses.append(value.item())
        current = dev_loss()
        history.append((epoch, float(np.mean(losses)), current, time.perf_counter() - started))
        print(f"epoch {epoch}: train {np.mean(losses):.3f} dev {current:.3f}", flush=True)
        if current < best:
            best, state = current, copy.deepcopy(top.state_dict())
    top.load_state_dict(state)
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-encoder", default="minilm+mpnet", help="the locked captions' encoder")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    dataset, store = load_flickr8k(), EmbeddingStore()
    splits = {s: dataset.split(s) for s in ("train", "dev")}
    top = Top(load_efficientnet_lite("efficientnet-lite0").eval())
    started = time.perf_counter()
    maps = {s: lower_maps(top, list(splits[s].flatten("image").values)) for s in splits}
    encode_seconds = time.perf_counter() - started
    text, items, best = {}, {}, {}
    for s, split in splits.items():
        embedded = embed_split(split, store, args.text_encoder, "efficientnet-lite0", progress=False)
        text[s], items[s] = unit_rows(embedded.text), embedded.text_items
        row = embed_split(split, store, BEST_TEXT, BEST_IMAGE, progress=False)
        best[s] = (row.text, row.image, row.text_items)
    untuned = {s: pooled(top, maps[s]) for s in splits}
    started = time.perf_counter()
    history = tune(top, maps, text, items, untuned["train"], args)
    tune_seconds = time.perf_counter() - started
    tuned = {s: pooled(top, maps[s]) for s in splits}

    def with_block(s: str, block: np.ndarray | None) -> tuple[np.ndarray, ...]:
        t, images, its = best[s]
        return (t, images if block is None else np.concatenate([images, block], 1), its)

    rows = {
        f"{args.text_encoder} × lite0, untuned, cca-256-weighted": scored(
            "cca-256-weighted",
            (text["train"], untuned["train"], items["train"]),
            (text["dev"], untuned["dev"], items["dev"]),
        ),
        f"{args.text_encoder} × lite0, tuned, cca-256-weighted": scored(
            "cca-256-weighted",
            (text["train"], tuned["train"], items["train"]),
            (text["dev"], tuned["dev"], items["dev"]),
        ),
        "best row (make bench-best-tuned), cca-384-wide": scored(
            "cca-384-wide", with_block("train", None), with_block("dev", None)
        ),
        "best row + tuned lite0 pool, cca-384-wide": scored(
            "cca-384-wide", with_block("train", tuned["train"]), with_block("dev", tuned["dev"])
        ),
    }
    table = markdown_table(
        ["row (dev, CSLS k=10)", *METRICS], [[name, *(f"{m[k]:.1f}" for k in METRICS)] for name, m in rows.items()]
    )
    losses = ", ".join(f"{e}: {d:.3f}" for e, _, d, _ in history)
    write_section(
        args.results,
        "image-tuning",
        "Tuning the image tower: lite0's stages 6-7 and head against locked captions (issue 16, dev)",
        shlex.join(["python", "benchmarks/image_tuning.py", *sys.argv[1:]]),
        table,
        f"Flickr8k dev split (1k images, 5,000 captions); tuned on the 6,000 train images against `{args.text_encoder}`",
        notes=[
            f"- Lower stages' maps of 7,000 images × 2 views: {encode_seconds:.0f} s; tuning {args.epochs} epochs: "
            f"{tune_seconds:.0f} s ({tune_seconds / max(args.epochs, 1):.0f} s an epoch), lr {args.lr}, batch "
            f"{args.batch_size}, seed {args.seed}.",
            f"- Dev InfoNCE loss by epoch (0: untuned; the lowest is kept): {losses}.",
        ],
    )


if __name__ == "__main__":
    main()
