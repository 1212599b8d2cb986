"""Few-pair alignment on Flickr8k: what 100 and 300 labelled pairs reach with methods that also
use the unpaired train items (issue 15, exploration; none of these is a preset yet).

Each draw takes ``n`` random (caption, image) pairs of the train split (seeded); the other
train captions and images serve unpaired, without their pairing. Scored on the 1k test split
as ``xmodal bench`` scores (CSLS k=10): the mean of t2i and i2t R@10, over 3 draws.

- ``procrustes-t2i``: the preset, fitted on the pairs alone (the baseline of the issue).
- *semi-supervised CCA*: CCA whose within-modality covariances come from all unpaired rows and
  only the cross-covariance from the pairs (``k`` components, ``reg`` 1.0, weights ``corr``).
- *PCA Procrustes*: both spaces reduced to their first 128 principal components (fitted on the
  unpaired rows), rows L2-normalised, an orthogonal map fitted on the pairs.
- *+ refinement*: MUSE-style self-training: map 15,000 unpaired captions and the 6,000 images,
  keep the 3,000 most confident mutual CSLS nearest neighbours as pseudo-pairs, refit on pairs
  + pseudo-pairs; 3 rounds.
- *relative representations*: each row becomes its cosines to the ``n`` anchors of its own
  modality (Moschella et al. 2023), compared across modalities.
- ``SelfTrainingAligner`` (shipped, :mod:`xmodal.align.few_pair`): the pairs plus every train
  caption and image as unpaired rows; PCA-128 Procrustes, 3 rounds of mutual-CSLS refinement,
  then a weighted CCA on pairs + pseudo-pairs, 4 rounds of soft pairs from entropic transport
  plans, and 8 epochs of contrastive training of its two maps on pairs drawn from those plans;
  *+ ImageNet prior*: efficientnet-lite0's own classifier read through minilm (in the class
  space) joins every step and the final space.

    .venv/bin/python benchmarks/few_pairs.py
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xmodal.align import linalg
from xmodal.align.few_pair import SelfTrainingAligner
from xmodal.align.presets import make_aligner
from xmodal.bench.results import markdown_table, write_section
from xmodal.core.arrays import unit_rows
from xmodal.core.csls import column_top_k_mean, csls, top_k_mean
from xmodal.data import load_flickr8k
from xmodal.evaluate import evaluate_bidirectional
from xmodal.store import EmbeddingStore, SplitEmbeddings, embed_split

Map = Callable[[np.ndarray], np.ndarray]
BUDGETS, DRAWS, PCA_DIMS, ROUNDS, PSEUDO, UNPAIRED_CAPTIONS = (100, 300), 3, 128, 3, 3000, 15_000
TARGETS = (30, 54)  # issue 15's acceptance at 100 and 300 pairs


class FewPairs:
    """The unpaired pools of the train split and the test split, unit rows."""

    def __init__(self, train: SplitEmbeddings, test: SplitEmbeddings, dev: SplitEmbeddings):
        self.train, self.test, self.dev = train, test, dev
        self.text, self.image = unit_rows(train.text), unit_rows(train.image)
        self.pca = {m: _pca(x, PCA_DIMS) for m, x in (("text", self.text), ("image", self.image))}
        rng = np.random.default_rng(1)
        self.captions = self.text[rng.choice(len(self.text), UNPAIRED_CAPTIONS, replace=False)]

    def score(self, maps: tuple[Map, Map], split: str = "test") -> float:
        part = self.test if split == "test" else self.dev
        text, image = maps[0](unit_rows(part.text)), maps[1](unit_rows(part.image))
        m = evaluate_bidirectional(text, image, part.text_items, part.image_items, csls_k=10)
        return (m["t2i/R@10"] + m["i2t/R@10"]) / 2

    def semi_cca(self, text: np.ndarray, image: np.ndarray, k: int) -> tuple[Map, Map]:
        mt, mi = self.text.mean(0), self.image.mean(0)
        cross = (text - mt).T @ (image - mi) / len(text)
        a, b, corr = linalg.cca_from_covariances(
            np.cov(self.text.T, bias=True), np.cov(self.image.T, bias=True), cross, k, reg=1.0
        )
        return (lambda x: (x - mt) @ (a * corr)), (lambda x: (x - mi) @ (b * corr))

    def pca_procrustes(self, text: np.ndarray, image: np.ndarray) -> tuple[Map, Map]:
        (mt, ut), (mi, ui) = self.pca["text"], self.pca["image"]
        rotation, _ = linalg.orthogonal_procrustes(unit_rows((text - mt) @ ut), unit_rows((image - mi) @ ui))
        return (lambda x: unit_rows((x - mt) @ ut) @ rotation), (lambda x: unit_rows((x - mi) @ ui))

    def refined(self, text: np.ndarray, image: np.ndarray) -> tuple[Map, Map]:
        maps = self.pca_procrustes(text, image)
        for _ in range(ROUNDS):
            a, b = unit_rows(maps[0](self.captions)), unit_rows(maps[1](self.image))
            s = a @ b.T
            c = csls(s, top_k_mean(s, 10), column_top_k_mean([s], 10))
            best_image, best_caption = c.argmax(1), c.argmax(0)
            mutual = np.flatnonzero(best_caption[best_image] == np.arange(len(a)))
            keep = mutual[np.argsort(-c[mutual, best_image[mutual]])[:PSEUDO]]
            maps = self.pca_procrustes(
                np.concatenate([text, self.captions[keep]]), np.concatenate([image, self.image[best_image[keep]]])
            )
        return maps

    def self_training(self, text: np.ndarray, image: np.ndarray, prior: bool) -> tuple[Map, Map]:
        """The shipped aligner: the pairs, then every train caption and image unpaired."""
        n, n_text, n_image = len(text), len(self.text), len(self.image)
        rows = {
            "text": np.concatenate([text, self.text, np.zeros((n_image, text.shape[1]), np.float32)]),
            "image": np.concatenate([image, np.zeros((n_text, image.shape[1]), np.float32), self.image]),
        }
        present = {
            "text": np.r_[np.ones(n + n_text, bool), np.zeros(n_image, bool)],
            "image": np.r_[np.ones(n, bool), np.zeros(n_text, bool), np.ones(n_image, bool)],
        }
        names = {"prior_image": "efficientnet-lite0", "prior_text": "minilm"} if prior else {}
        aligner = SelfTrainingAligner(**names).fit(rows, present=present)
        self.last_pseudo_pairs = aligner.pseudo_pairs_
        return (
            functools.partial(aligner.transform, modality="text"),
            functools.partial(aligner.transform, modality="image"),
        )

    def relative(self, text: np.ndarray, image: np.ndarray) -> tuple[Map, Map]:
        mt, mi = self.text.mean(0), self.image.mean(0)
        anchors_t, anchors_i = unit_rows(text - mt), unit_rows(image - mi)
        return (lambda x: unit_rows(x - mt) @ anchors_t.T), (lambda x: unit_rows(x - mi) @ anchors_i.T)


def _pca(x: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    vectors = np.linalg.svd(np.cov((x - mean).T, bias=True))[0]
    return mean, vectors[:, :r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding flickr8k/")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/RESULTS.md"))
    parser.add_argument(
        "--shipped", action="store_true", help="only the shipped aligner with the prior (section few-pairs-shipped)"
    )
    args = parser.parse_args()
    dataset, store = load_flickr8k(args.data), EmbeddingStore()
    train = embed_split(dataset.split("train"), store, "minilm", "efficientnet-lite0", progress=False)
    test = embed_split(dataset.split("test"), store, "minilm", "efficientnet-lite0", progress=False)
    dev = embed_split(dataset.split("dev"), store, "minilm", "efficientnet-lite0", progress=False)
    bench = FewPairs(train, test, dev)
    t_rows, i_rows = train.pair_rows()
    methods: dict[str, Callable[[np.ndarray, np.ndarray], tuple[Map, Map]]] = {
        "semi-supervised CCA (64 components)": lambda t, i: bench.semi_cca(t, i, 64),
        "PCA-128 Procrustes": bench.pca_procrustes,
        "PCA-128 Procrustes + refinement (3 rounds)": bench.refined,
        "relative representations": bench.relative,
        "SelfTrainingAligner (shipped)": lambda t, i: bench.self_training(t, i, prior=False),
        "SelfTrainingAligner + ImageNet prior (shipped)": lambda t, i: bench.self_training(t, i, prior=True),
    }
    if args.shipped:
        methods = {name: method for name, method in methods.items() if "prior (shipped)" in name}
    scores: dict[str, dict[int, list[float]]] = {"procrustes-t2i (baseline)": {}, **{m: {} for m in methods}}
    on_dev: dict[str, dict[int, list[float]]] = {name: {} for name in scores}
    for n in BUDGETS:
        for draw in range(DRAWS):
            take = np.random.default_rng(draw).choice(len(t_rows), n, replace=False)
            raw = {"text": train.text[t_rows[take]], "image": train.image[i_rows[take]]}
            preset = make_aligner("procrustes-t2i").fit(raw)
            maps = (
                functools.partial(preset.transform, modality="text"),
                functools.partial(preset.transform, modality="image"),
            )
            scores["procrustes-t2i (baseline)"].setdefault(n, []).append(bench.score(maps))
            on_dev["procrustes-t2i (baseline)"].setdefault(n, []).append(bench.score(maps, "dev"))
            text, image = unit_rows(raw["text"]), unit_rows(raw["image"])
            for name, method in methods.items():
                fitted = method(text, image)
                scores[name].setdefault(n, []).append(bench.score(fitted))
                on_dev[name].setdefault(n, []).append(bench.score(fitted, "dev"))
            print(n, draw, {k: round(v[n][-1], 1) for k, v in scores.items()}, flush=True)
    rows = [
        [name, *(f"{np.mean(v[n]):.1f} ± {np.std(v[n]):.1f} (dev {np.mean(on_dev[name][n]):.1f})" for n in BUDGETS)]
        for name, v in scores.items()
    ]
    baseline = scores["procrustes-t2i (baseline)"]
    notes: list[str] = []
    for n, target in zip(BUDGETS, TARGETS):
        best = max(scores, key=lambda name: np.mean(scores[name][n]))
        ratio = np.mean(scores[best][n]) / np.mean(baseline[n])
        notes.append(
            f"- {n} pairs: best {best} at {np.mean(scores[best][n]):.1f}, {ratio:.2f}× the baseline "
            f"(issue 15 asks for {target}: not reached)." if np.mean(scores[best][n]) < target else
            f"- {n} pairs: best {best} at {np.mean(scores[best][n]):.1f}, {ratio:.2f}× the baseline (target {target} met)."
        )  # fmt: skip
    notes += (
        []
        if args.shipped
        else [
            "- Within-modality covariances from the unpaired rows do not rescue CCA: whitening by them "
            "amplifies the directions in which a few pairs' cross-covariance is noise.",
        ]
    )
    notes += [
        "- The ImageNet prior (no pair at all) meets images and captions in the classifier's class space: "
        "image class probabilities (efficientnet-lite0's classifier, temperature 0.5) and caption class "
        "probabilities (softmax of minilm cosines to the class texts, temperature 0.05), both square-rooted and "
        "centred. Alone it reaches 34.6 on dev (dev-centred), against 26.0 for the ConSE prior shipped before "
        "(the class probabilities weighting the class texts in minilm's space; temperature 3, top 20); "
        "temperatures chosen on dev (image 0.5 / 1 / 3, text 0.02 to 0.2). Class texts: 4 name templates + "
        "the class description (31.0 against 28.6 for one template, ConSE, dev). In the aligner (300 pairs, "
        "draw 0, dev) the class space gives 54.4 against 53.1 for ConSE. The prior weight 0.5 was first taken "
        "from one 300-pair draw scored on the test split during the exploration (a protocol slip); on dev it "
        "beat 0.8 (48.7 against 48.2, ConSE, 2 CCA rounds). With the class space and the transport rounds the "
        "weight (of the transport plans' scores and of the final space) was chosen again on dev, 300 pairs, "
        "draws 0 / 1 / 2: 0.5 gives 54.5 / 53.9 / 54.4 (mean 54.2), 0.7 gives 55.4 / 54.8 / 55.1 (mean 55.1, "
        "kept), 0.9 gives 54.7 (draw 0).",
        "- The transport rounds were chosen on dev (300 pairs, draw 0; mean R@10): the hard pseudo-pairs shipped "
        "before (each caption with its best image when among that image's 5 best, 3 CCA rounds of 128 components) "
        "49.0. Soft pairs from the entropic transport plan (temperature 0.05 / 0.02 / 0.01): 50.3 / 50.3 / 49.7; "
        "with the labelled pairs counted 10 times: 51.3 at 0.02, 51.6 at 0.03 (30 times: 49.3); 4 rounds instead "
        "of 3: +0.3 to +0.7, 6 rounds no more; CCA width 128 / 256 / 384: 51.6 / 52.8 / 53.1 (kept: 384, "
        "4 rounds, 0.03, 10 times). Lost: temperature 0.04 (52.6 at width 384), ridge 3 (51.9) or unweighted "
        "correlations (51.6) at width 128, barycentric pairs instead of the plan's statistics (51.0), the ConSE "
        "vector as extra image features of the CCA (48.2).",
        "- Dev screens after the weight (300 pairs, mean R@10; draw 0 unless said; 0.7 scores 55.4 / 54.8 / 55.1 "
        "on draws 0 / 1 / 2), none kept: 6 transport rounds 55.3, pairs counted 20 times 54.6, temperature 0.02 "
        "55.1, 5 rotation rounds 55.4; the captions' class temperature in the aligner 0.02 / 0.03 / 0.08: 55.8 / "
        "56.1 / 53.8, but 0.03 on draws 1 and 2 gives 54.6 / 55.0 (mean 55.2 against 55.1: noise). Lost "
        "(2026-11-28, draw 0): the unpaired pools as a bridge, each train caption voting with its images in the "
        "transport plan of the final space and each train image with its captions (`QueryBridge`, beta 10 / 30 / "
        "100, weight 0.1 to 0.5, plan temperature 0.03 / 0.01), 55.3 at best (t2i +0.2, i2t -0.5); the mirrored "
        "train images as more pairs and pool rows 54.4, as more pairs only (counted 5 times each) 55.3. Lost on "
        "draw 0 (2026-11-28, second session): the captions' prior block learned from the final transport plan (a "
        "ridge map from minilm to the plan's average image class vector; alone 47.4 against 34.6 for the cosines "
        "to the class texts) in place of or mixed with the cosines, 55.0 to 55.6 against 55.4; the plan's scores "
        "smoothed over each caption's and each image's 4 nearest pool neighbours before the last CCA (weight 0.5 / "
        "1), 55.0 to 55.5 against 55.3 refitted the same way.",
        "- The contrastive epochs (step 5 of the aligner, 2026-11-28) were chosen on dev with a standalone "
        "script before they joined the aligner (300 pairs, draw 0, from 55.4; mean R@10 after the last epoch): "
        "Adam at temperature 0.05 for 6 epochs, learning rate 1e-4 / 1e-3 / 3e-3: 55.8 / 57.1 / 57.0; learning "
        "rate 1e-3, temperature 0.02: 55.2 (56.2 after its 2nd epoch), 0.05 for 12 epochs 57.4, 0.1 for 10 "
        "epochs 57.0; the plan computed again every 4 epochs (1e-3, 0.1): 57.6 after 8 epochs, 57.4 after 12 "
        "(kept: 8 epochs, re-planned every 4, 1e-3, 0.1). With those, draws 1 and 2 on dev: 54.8 -> 56.9 and "
        "55.1 -> 56.3; 100 pairs, draw 0, dev: 52.7 -> 53.9. In the aligner, test, 300 pairs, draws 0 / 1 / 2: 56.2 / "
        "55.0 / 54.5 (the script: 56.5 / 55.5 / 54.3; the batches come in another order). A first run of the "
        "aligner took the labelled pairs of step 5 from their row numbers in the text pool, which is a sample "
        "of 30,000 of its 30,300 rows at 300 pairs, so most labelled texts met the next pair's image: 55.2 / 54.3 / "
        "54.6 (fixed). The baseline reads 20.6 / 36.3 here against 20.4 / 36.1 in the earlier run of this "
        "command (the embedding cache was rebuilt since); the aligner without step 5 still gives 53.8 at 300 "
        "pairs on this cache (54.5 / 53.8 / 53.2).",
        "- The prior uses the image encoder's own classifier head, trained on ImageNet labels: no image-text "
        "pair, but not a text-free signal either.",
    ]
    write_section(
        args.results,
        "few-pairs-shipped" if args.shipped else "few-pairs",
        "Few pairs on Flickr8k: the shipped aligner (issue 15)"
        if args.shipped
        else "Few pairs on Flickr8k: methods that also use the unpaired train items (issue 15)",
        shlex.join(["python", "benchmarks/few_pairs.py", *sys.argv[1:]]),
        markdown_table(["method", *(f"{n} pairs" for n in BUDGETS)], rows),
        f"mean of t2i and i2t R@10 on the 1k test split, CSLS k=10, {DRAWS} seeded draws (mean ± std; in "
        "brackets the mean on the 1k dev split); minilm + efficientnet-lite0",
        notes=notes,
    )


if __name__ == "__main__":
    main()
