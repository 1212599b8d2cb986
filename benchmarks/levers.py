"""Re-ranking and hubness levers beyond CSLS (issue 16): query-bank normalisation (inverted
softmax, dual softmax, QB-Norm), Sinkhorn balancing, k-reciprocal consensus and the training set
as a bridge (:mod:`xmodal.retrieval.rerank`), as an ablation on Flickr8k.

``cca-256-weighted`` is fitted on the 30,000 train pairs. Every bank (the training queries that
normalise a gallery column, or CSLS's reference when it is not the test queries) and every
bridge pair comes from the train split, mapped by the same aligner, except in the rows that say
they are transductive (the evaluated queries as the bank, like the headline's CSLS reference). Each lever's
hyper-parameters are chosen per direction on the dev split (1k images, 5,000 captions) by
R@1 + R@5 + R@10, from a small grid; the 1k test split is then scored once per lever with
the chosen values.

    .venv/bin/python benchmarks/levers.py [--text-encoders minilm minilm-lit]
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.align.presets import make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.core.arrays import unit_rows
from xmodal.data import load_flickr8k
from xmodal.evaluate import evaluate_retrieval
from xmodal.retrieval import BankNormaliser, Bridge, KReciprocal, Scorer, SinkhornNormaliser, group_means
from xmodal.retrieval.rerank import bridge_votes, expand_queries
from xmodal.store import EmbeddingStore, SplitEmbeddings, embed_split

IMAGE_ENCODER, ALIGNER, HEADLINE_K = "efficientnet-lite0", "cca-256-weighted", 10
NONE, HEADLINE = "none (cosine)", f"CSLS k={HEADLINE_K}, test queries as reference (headline)"
DIRECTIONS = ("t2i", "i2t")
RECALLS = ("R@1", "R@5", "R@10")
BRIDGE_GRID = {"beta": (10.0, 30.0, 100.0), "weight": (0.1, 0.2, 0.3)}
SINKHORN_GRID = {"epsilon": (0.03, 0.05, 0.07, 0.1)}


@dataclass(frozen=True)
class Direction:
    """One retrieval direction of one split, in the shared space, with what the levers need
    from the train split: the bank of training queries and the bridges' (bank, votes, gallery)."""

    queries: np.ndarray
    gallery: np.ndarray
    query_labels: np.ndarray
    gallery_labels: np.ndarray
    bank: np.ndarray
    bridges: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


Setting = dict[str, Any]  # queries (default: the direction's) and evaluate_retrieval's csls_k, reference, rerank


@dataclass(frozen=True)
class Lever:
    """A lever, its grid of hyper-parameters and the row it is applied to (``base``)."""

    label: str
    grid: list[dict[str, Any]]
    setting: Callable[[Direction, dict[str, Any]], Setting]
    base: str = NONE


def grid(**values: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]


def bank_normaliser(kind: str) -> Callable[[Direction, dict[str, Any]], Setting]:
    return lambda d, p: {"rerank": BankNormaliser(kind, beta=p["beta"]).fit(Scorer(d.bank, d.gallery))}


def bridged(csls_k: int, votes: str) -> Callable[[Direction, dict[str, Any]], Setting]:
    """The bridge as a rerank of cosine (``csls_k = 0``) or CSLS scores, ``votes`` a key of ``Direction.bridges``."""

    def setting(d: Direction, p: dict[str, Any]) -> Setting:
        return {"csls_k": csls_k, "rerank": Bridge(p["beta"], p["weight"]).fit(*d.bridges[votes])}

    return setting


def rewritten(d: Direction, p: dict[str, Any]) -> Setting:
    """The bridge as a query rewrite (paired items vote in the shared space), searched with CSLS."""
    bank, votes, _ = d.bridges["paired, shared space"]
    voted = bridge_votes(d.queries, bank, votes, beta=p["beta"], neighbours=50)
    return {"queries": expand_queries(d.queries, voted, p["weight"]), "csls_k": HEADLINE_K}


LEVERS = [
    Lever(NONE, [{}], lambda d, p: {}, base=""),
    Lever(HEADLINE, [{}], lambda d, p: {"csls_k": HEADLINE_K}),
    Lever("CSLS, train queries as reference", grid(k=(10, 30, 100)), lambda d, p: {"csls_k": p["k"], "reference": d.bank}),
    Lever("inverted softmax (train bank)", grid(beta=(5.0, 10.0, 20.0)), bank_normaliser("inverted-softmax")),
    Lever("dual softmax (train bank)", grid(beta=(10.0, 20.0, 40.0, 80.0)), bank_normaliser("dual-softmax")),
    Lever("QB-Norm, dynamic inverted softmax (train bank)", grid(beta=(5.0, 10.0, 20.0)), bank_normaliser("qb-norm")),
    Lever("Sinkhorn balancing (train bank)", grid(**SINKHORN_GRID),
          lambda d, p: {"rerank": SinkhornNormaliser(p["epsilon"]).fit(Scorer(d.bank, d.gallery))}),
    Lever("Sinkhorn balancing, test queries as bank (transductive)", grid(**SINKHORN_GRID),
          lambda d, p: {"rerank": SinkhornNormaliser(p["epsilon"]).fit(Scorer(d.queries, d.gallery))}),
    Lever("k-reciprocal (shared space)", grid(k=(5, 10, 20), weight=(0.05, 0.1, 0.2)),
          lambda d, p: {"rerank": KReciprocal(p["k"], p["weight"]).fit(d.gallery)}),
    Lever("bridge: paired train items vote (shared space)", grid(**BRIDGE_GRID), bridged(0, "paired, shared space")),
    Lever("bridge: paired train items vote (gallery encoder's space)", grid(**BRIDGE_GRID),
          bridged(0, "paired, encoder space")),
    Lever("expansion: train queries vote (shared space)", grid(**BRIDGE_GRID), bridged(0, "the train queries")),
    Lever(f"k-reciprocal, on CSLS k={HEADLINE_K}", grid(k=(5, 10, 20), weight=(0.05, 0.1, 0.2)),
          lambda d, p: {"csls_k": HEADLINE_K, "rerank": KReciprocal(p["k"], p["weight"]).fit(d.gallery)}, HEADLINE),
    Lever(f"bridge (gallery encoder's space) reranking CSLS k={HEADLINE_K}", grid(**BRIDGE_GRID),
          bridged(HEADLINE_K, "paired, encoder space"), HEADLINE),
    Lever(f"bridge as a query rewrite (shared space), then CSLS k={HEADLINE_K}", grid(**BRIDGE_GRID), rewritten,
          HEADLINE),
]  # fmt: skip


def directions(splits: Mapping[str, SplitEmbeddings]) -> dict[str, dict[str, Direction]]:
    """``{split: {direction: Direction}}`` for dev and test, ``cca-256-weighted`` fitted on train."""
    train = splits["train"]
    aligner = make_aligner(ALIGNER).fit(train.training_pairs())
    text_rows, image_rows = train.pair_rows()
    means = {"text": unit_rows(train.text).mean(0), "image": unit_rows(train.image).mean(0)}

    def shared(x: np.ndarray, modality: str) -> np.ndarray:
        return aligner.transform(x, modality)

    def native(x: np.ndarray, modality: str) -> np.ndarray:
        """The encoder's own space, centred on the train rows (cosine needs the mean away)."""
        return unit_rows(unit_rows(x) - means[modality])

    def per_image(captions: np.ndarray) -> np.ndarray:
        """The mean of each train image's caption rows (unit rows first): what an image votes with."""
        return group_means(captions[text_rows], image_rows)[1]

    bank = {"text": shared(train.text, "text"), "image": shared(train.image, "image")}
    train_side = {  # (bank, votes in the shared space, votes in the encoder space) of each query modality
        "text": (bank["text"][text_rows], bank["image"][image_rows], native(train.image, "image")[image_rows]),
        "image": (bank["image"], per_image(bank["text"]), per_image(native(train.text, "text"))),
    }
    out: dict[str, dict[str, Direction]] = {}
    for name in ("dev", "test"):
        part = splits[name]
        rows = {"text": (part.text, part.text_items), "image": (part.image, part.image_items)}
        out[name] = {}
        for direction, (q, g) in zip(DIRECTIONS, (("text", "image"), ("image", "text")), strict=True):
            gallery, bridge_bank = shared(rows[g][0], g), train_side[q]
            out[name][direction] = Direction(
                queries=shared(rows[q][0], q), gallery=gallery, query_labels=rows[q][1], gallery_labels=rows[g][1],
                bank=bank[q],
                bridges={"paired, shared space": (bridge_bank[0], bridge_bank[1], gallery),
                         "paired, encoder space": (bridge_bank[0], bridge_bank[2], native(rows[g][0], g)),
                         "the train queries": (bank[q], bank[q], gallery)},
            )  # fmt: skip
    return out


def score(d: Direction, setting: Setting) -> dict[str, float]:
    options = dict(setting)
    queries = options.pop("queries", d.queries)
    return evaluate_retrieval(queries, d.gallery, d.query_labels, d.gallery_labels, **options)


def rsum(metrics: Mapping[str, float]) -> float:
    return sum(metrics[r] for r in RECALLS)


def ablation(data: dict[str, dict[str, Direction]]) -> list[dict[str, Any]]:
    """For each lever and direction: the chosen parameters, the dev and the test metrics."""
    results = []
    for lever in LEVERS:
        row: dict[str, Any] = {"lever": lever.label, "base": lever.base}
        for direction in DIRECTIONS:
            start = time.perf_counter()
            dev = [score(data["dev"][direction], lever.setting(data["dev"][direction], p)) for p in lever.grid]
            best = max(range(len(dev)), key=lambda i: rsum(dev[i]))  # the first of equals
            test = score(data["test"][direction], lever.setting(data["test"][direction], lever.grid[best]))
            row[direction] = {"params": lever.grid[best], "dev": dev[best], "test": test}
            print(f"{lever.label} {direction}: {lever.grid[best]} dev {rsum(dev[best]):.1f} test {rsum(test):.1f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
        results.append(row)
    return results


def describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "-"


def table(results: list[dict[str, Any]]) -> str:
    by_label = {row["lever"]: row for row in results}

    def recalls(row: dict[str, Any], split: str, direction: str) -> str:
        return " / ".join(f"{row[direction][split][r]:.1f}" for r in RECALLS)

    def gain(row: dict[str, Any], split: str) -> str:
        if not row["base"]:
            return "-"
        base = by_label[row["base"]]
        return " / ".join(f"{rsum(row[d][split]) - rsum(base[d][split]):+.1f}" for d in DIRECTIONS)

    columns = ["lever", "chosen on dev: t2i; i2t",
               "dev t2i R@1/5/10", "dev i2t R@1/5/10", "**test** t2i R@1/5/10", "**test** i2t R@1/5/10",
               "gain over its base, dev (t2i / i2t)", "gain over its base, **test** (t2i / i2t)"]  # fmt: skip
    rows = [
        [row["lever"], "; ".join(describe(row[d]["params"]) for d in DIRECTIONS),
         *(recalls(row, s, d) for s in ("dev", "test") for d in DIRECTIONS), gain(row, "dev"), gain(row, "test")]
        for row in results
    ]  # fmt: skip
    return markdown_table(columns, rows)


def activated_share(d: Direction) -> float:
    """Share (%) of the gallery that QB-Norm normalises: the top-1 of some bank query."""
    return 100.0 * float(BankNormaliser("qb-norm").fit(Scorer(d.bank, d.gallery)).activated_.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding flickr8k/")
    parser.add_argument("--text-encoders", nargs="+", default=["minilm", "minilm-lit"])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    dataset, store = load_flickr8k(args.data), EmbeddingStore()
    tables = []
    for text_encoder in args.text_encoders:
        splits = {s: embed_split(dataset.split(s), store, text_encoder, IMAGE_ENCODER, progress=False)
                  for s in ("train", "dev", "test")}  # fmt: skip
        data = directions(splits)
        results = ablation(data)
        shares = ", ".join(f"{d} {activated_share(data['test'][d]):.0f} %" for d in DIRECTIONS)
        tables += [f"**{text_encoder} + {IMAGE_ENCODER}**, `{ALIGNER}` (QB-Norm's activation set on test: "
                   f"{shares} of the gallery)", "", table(results), ""]  # fmt: skip
    write_section(
        args.results,
        "levers",
        "Re-ranking and hubness levers beyond CSLS (issue 16)",
        shlex.join(["python", "benchmarks/levers.py", *sys.argv[1:]]),
        "\n".join(tables).rstrip(),
        f"Flickr8k, `{ALIGNER}` on the 30,000 train pairs; hyper-parameters chosen per direction on **dev** "
        "(R@1+R@5+R@10), **test** (1k images, 5,000 captions) scored once with them",
        notes=NOTES,
    )


NOTES = [
    "- Banks and bridges use the train split only (30,000 captions; 6,000 images, each voting with the mean of its "
    "5 captions), mapped by the same aligner; the test queries never see each other except in the headline's CSLS, "
    "whose reference is the test queries themselves (transductive).",
    f"- Gains are differences of R@1+R@5+R@10 (points), per direction, over the row the lever is applied to: "
    f"*{NONE}* for a lever alone, the headline for those on CSLS k={HEADLINE_K}.",
    "- No bank normaliser replaces CSLS: inverted softmax, dual softmax and QB-Norm end 0.3 to 7 points below the "
    "headline on test. QB-Norm degenerates to the inverted softmax for t2i, where 30,000 bank captions make "
    "96-97 % of the 1,000 images some caption's top-1. Without transduction (a train bank or reference), CSLS "
    "and the inverted and dual softmaxes are within 3 points of each other, QB-Norm up to 4.5 below; the headline's test-query reference is worth 0.5-1 point "
    "t2i and 2-5 points i2t on test.",
    "- The lever that adds: the bridge as a query rewrite before CSLS, for t2i: test R@1/5/10 +0.9/+1.8/+1.5 "
    "(minilm), +0.7/+1.2/+1.3 (minilm-lit), the same sign on dev. For i2t it is noise (+0.4, -0.2 on test). "
    "k-reciprocal consensus and the expansion through training queries add nothing.",
    "- Sinkhorn balancing (`SinkhornNormaliser`, 2026-11-28): each query ranks the gallery by `s / epsilon + g`, "
    "`g` the column potentials of the entropic transport plan between a bank of queries and the gallery (uniform "
    "masses): the inverted softmax balanced to convergence. With a train bank (deployable, one query at a time) it "
    "is the best bank normaliser and ties CSLS for t2i (test R@1+5+10 148.0 against the headline's 148.0, minilm; "
    "159.3 against 160.1, minilm-lit) but not for i2t (-3.1, -1.9). With the evaluated queries as the bank "
    "(transductive) it beats the headline on both encoders and both splits: test +2.9 / +7.0 (R@10 68.9 / 76.6 "
    "against 68.0 / 74.5, minilm), +2.0 / +7.8 (72.8 / 79.5 against 72.4 / 77.3, minilm-lit). Uniform masses "
    "match what this protocol knows about its gallery (every test image has 5 captions, every caption one image), "
    "so that row uses more than CSLS's reference does; it is reported, not made the headline, and not set against "
    "CLIP's figures, which rank one query at a time.",
]


if __name__ == "__main__":
    main()
