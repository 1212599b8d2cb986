"""Few pairs, many unpaired rows: self-training from a handful of pairs, with an optional
zero-pair prior (issue 15).

:class:`SelfTrainingAligner` fits on rows of which only some are pairs: ``fit(embeddings,
present=...)`` with rows that have both modalities (the labelled pairs) and rows that have
one (the unpaired pool of each modality)::

    present = {"text": has_text, "image": has_image}   # both True: a pair
    SelfTrainingAligner(prior_image="efficientnet-lite0", prior_text="minilm").fit(rows, present=present)

1. Both modalities are reduced to their first ``pca_components`` principal components
   (fitted on every row of the modality, paired or not) and an orthogonal map is fitted on
   the pairs (Procrustes: with few pairs, a rotation is what the data can pin down).
2. ``rounds`` of MUSE-style refinement (Conneau et al. 2018): score the pools against each
   other, keep the mutual nearest neighbours under CSLS (k=10) as pseudo-pairs, refit the
   rotation on pairs + pseudo-pairs.
3. A weighted CCA (``n_components``, at most the smaller embedding width; correlations ** 0.5,
   ridge 1.0) is fitted on the pairs (each counted ``pair_weight`` times) and the last
   pseudo-pairs: with thousands of (noisy) pairs, CCA beats a rotation.
4. ``cca_rounds`` rounds of optimal transport in the CCA's space: the entropic transport plan
   between the two pools (:func:`~xmodal.align.linalg.sinkhorn`, temperature ``transport``,
   every row of a pool carrying the same mass) pairs each text softly with the images it
   likely shows, and the CCA is fitted again on the pairs and as many pairs drawn from the
   plan as there are texts in the pool (:meth:`Statistics.from_plan`). Soft pairs beat hard
   pseudo-pairs here: a plan spreads an uncertain text over its likely images instead of
   betting on one.

The prior (optional): the image encoder's own ImageNet classifier, read through the text
encoder's embeddings of the class names (:mod:`xmodal.encoders.prior`), relates images and
texts without any pair. ``prior_space="classes"`` (the default) puts both in the class space:
an image's class probabilities from the classifier, a text's from its cosines to the class
texts, square-rooted; ``"text"`` puts images in the text space as ConSE vectors (class
probabilities weighting the class texts) beside the text rows themselves. Either joins the
scores of every step as a second block of the shared space (centred, unit rows), weighted
``prior_weight`` in the transport rounds and the final space: ``[cca(x), prior_weight * prior(x)]``
(0.7, chosen on Flickr8k dev).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from xmodal.align import linalg
from xmodal.align.base import Aligner
from xmodal.align.closed_form import CCAAligner
from xmodal.align.statistics import Statistics
from xmodal.core.arrays import unit_rows
from xmodal.core.csls import csls, top_k_mean
from xmodal.encoders.prior import (
    IMAGE_TEMPERATURE,
    TEMPERATURE,
    TEXT_TEMPERATURE,
    TOP,
    ClassifierPrior,
    imagenet_prior,
)

if TYPE_CHECKING:
    import torch

CSLS_K = 10
MIN_PAIRS = 3
PRIOR_SPACES = ("text", "classes")


class SelfTrainingAligner(Aligner):
    """Few labelled pairs + unpaired rows of each modality (see the module docstring).

    ``prior_image`` / ``prior_text`` name the image encoder whose ImageNet classifier, and the
    text encoder whose embeddings of the class names, make the zero-pair prior (both or
    neither; they must be the encoders of the image and text embeddings being aligned);
    ``prior_modality`` is the modality of the images (the other one is the text). With
    ``imagenet_prior``, a fitted model's encoders name them (:meth:`use_encoders`, called by
    ``xmodal fit``). ``pool`` caps the unpaired rows of each modality used for pseudo-pairs
    (a seeded sample). ``image_temperature`` / ``text_temperature`` sharpen the class
    distributions of ``prior_space="classes"``; ``temperature`` and ``top`` are ConSE's
    (``prior_space="text"``).
    """

    partial_rows = True
    unpaired_rows = True

    def __init__(
        self,
        n_components: int = 384,
        pca_components: int = 128,
        rounds: int = 3,
        cca_rounds: int = 4,
        transport: float = 0.03,
        pair_weight: int = 10,
        head_epochs: int = 8,
        head_lr: float = 1e-3,
        head_temperature: float = 0.1,
        replan: int = 4,
        batch_size: int = 512,
        prior_image: str | None = None,
        prior_text: str | None = None,
        prior_modality: str = "image",
        imagenet_prior: bool = False,
        prior_weight: float = 0.7,
        prior_space: str = "classes",
        temperature: float = TEMPERATURE,
        top: int = TOP,
        image_temperature: float = IMAGE_TEMPERATURE,
        text_temperature: float = TEXT_TEMPERATURE,
        pool: int = 30_000,
        seed: int = 0,
        normalize: bool = True,
    ):
        super().__init__(normalize=normalize)
        self.n_components = n_components
        self.pca_components = pca_components
        self.rounds = rounds
        self.cca_rounds = cca_rounds
        self.transport = transport
        self.pair_weight = pair_weight
        self.head_epochs = head_epochs
        self.head_lr = head_lr
        self.head_temperature = head_temperature
        self.replan = replan
        self.batch_size = batch_size
        self.prior_image = prior_image
        self.prior_text = prior_text
        self.prior_modality = prior_modality
        self.imagenet_prior = imagenet_prior
        self.prior_weight = prior_weight
        self.prior_space = prior_space
        self.temperature = temperature
        self.top = top
        self.image_temperature = image_temperature
        self.text_temperature = text_temperature
        self.pool = pool
        self.seed = seed

    def use_encoders(self, names: Mapping[str, str]) -> None:
        """With ``imagenet_prior``: the prior's encoders are the model's (``names``:
        ``{modality: encoder}``); named ones must be those."""
        if not self.imagenet_prior:
            return
        if self.prior_modality not in names or len(names) != 2:
            raise ValueError(
                f"imagenet_prior reads the {self.prior_modality!r} encoder's classifier: the model has {', '.join(names)}"
            )
        text = next(m for m in names if m != self.prior_modality)
        wanted = {"prior_image": names[self.prior_modality], "prior_text": names[text]}
        for param, name in wanted.items():
            given = getattr(self, param)
            if given is not None and given != name:
                raise ValueError(f"{param} is {given!r} but the model's encoder is {name!r}")
        self.set_params(**wanted)

    def _fit_partial(self, data: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> None:
        if (self.prior_image is None) != (self.prior_text is None):
            raise ValueError("a prior needs both prior_image and prior_text (or neither)")
        if self.imagenet_prior and self.prior_image is None:
            raise ValueError("imagenet_prior takes the model's encoders (xmodal fit): name prior_image and prior_text")
        if not (isinstance(self.pair_weight, int) and self.pair_weight >= 1) or self.cca_rounds < 0:
            raise ValueError(
                f"pair_weight must be a positive integer and cca_rounds at least 0, got {self.pair_weight!r} and "
                f"{self.cca_rounds!r}"
            )
        if not (
            isinstance(self.head_epochs, int) and self.head_epochs >= 0 and self.replan >= 1 and self.batch_size >= 2
        ):
            raise ValueError(
                f"head_epochs must be an integer of at least 0, replan at least 1 and batch_size at least 2, got "
                f"{self.head_epochs!r}, {self.replan!r} and {self.batch_size!r}"
            )
        if not (self.head_lr > 0 and 0 < self.head_temperature <= 1):
            raise ValueError(
                f"head_lr must be positive and head_temperature in (0, 1], got {self.head_lr!r} and "
                f"{self.head_temperature!r}"
            )
        if not self.transport > 0:
            raise ValueError(f"transport (the plan's temperature) must be positive, got {self.transport!r}")
        if not (self.image_temperature > 0 and self.text_temperature > 0):
            raise ValueError(
                f"image_temperature and text_temperature must be positive, got {self.image_temperature!r} and "
                f"{self.text_temperature!r}"
            )
        if self.prior_space not in PRIOR_SPACES:
            raise ValueError(f"prior_space must be one of {PRIOR_SPACES}, got {self.prior_space!r}")
        if self.prior_image is not None and self.prior_modality not in data:
            raise ValueError(f"prior_modality {self.prior_modality!r} is not one of {list(data)}")
        text, image = self._sides(tuple(data))
        paired = present[text] & present[image]
        if paired.sum() < MIN_PAIRS:
            raise ValueError(
                f"self-training needs at least {MIN_PAIRS} pairs (rows with both modalities), got {paired.sum()}"
            )
        rng = np.random.default_rng(self.seed)
        pools = {m: _sample(data[m][present[m]], self.pool, rng) for m in (text, image)}
        pairs = {m: data[m][paired] for m in (text, image)}
        priors: dict[str, np.ndarray | None] = {text: None, image: None}
        if self.prior_image is not None:  # the pools' prior blocks, computed once for every step
            self._build_prior(pools[text].shape[1], pools[image].shape[1])
            vectors = {m: self._prior_vectors(pools[m], m) for m in (text, image)}
            self.prior_mean_ = {m: v.mean(0) for m, v in vectors.items()}
            priors = {m: unit_rows(v - self.prior_mean_[m]) for m, v in vectors.items()}
            del vectors
        r = min(self.pca_components, *(x.shape[1] for x in pools.values()), *(len(x) - 1 for x in pools.values()))
        space = _RotatedSpace(pools, priors, r, text)
        space.fit(pairs[text], pairs[image])
        rows = space.pseudo_pairs()
        for _ in range(self.rounds):
            space.fit(*(np.concatenate([pairs[m], pools[m][rows[m]]]) for m in (text, image)))
            rows = space.pseudo_pairs()
        width = min(self.n_components, *(x.shape[1] for x in pools.values()))
        labelled = Statistics.from_arrays({m: np.tile(pairs[m], (self.pair_weight, 1)) for m in (text, image)})
        pseudo = Statistics.from_arrays({m: pools[m][rows[m]] for m in (text, image)})
        for cca_round in range(self.cca_rounds + 1):
            if cca_round:  # soft pairs from the transport plan in the space of the last CCA
                plan = self._plan(pools, priors, text, image)
                pseudo = Statistics.from_plan({m: pools[m] for m in (text, image)}, plan, len(pools[text]))
                del plan
            cca = CCAAligner(width, reg=1.0, weight_power=0.5, normalize=False)
            cca.fit_statistics(labelled + pseudo)
            self.projection_ = {m: cca.affine(m)[0] for m in (text, image)}
            self.mean_ = dict(cca.mean_)
        if self.head_epochs:
            self._train_maps(pools, priors, pairs, text, image)
        self.pairs_ = int(paired.sum())
        self.pseudo_pairs_ = len(rows[text])

    def _plan(
        self, pools: dict[str, np.ndarray], priors: dict[str, np.ndarray | None], text: str, image: str
    ) -> np.ndarray:
        """The entropic transport plan between the two pools in the current final space."""
        joined = {m: self._joined(self._shared(pools[m], m), priors[m]) for m in (text, image)}
        return linalg.sinkhorn(joined[text] @ joined[image].T, self.transport)

    def _train_maps(
        self,
        pools: dict[str, np.ndarray],
        priors: dict[str, np.ndarray | None],
        pairs: dict[str, np.ndarray],
        text: str,
        image: str,
    ) -> None:
        """Step 5: the linear maps trained contrastively on the labelled ``pairs`` and on pairs
        drawn from transport plans between the ``pools``. torch is imported here, not with the
        module: the closed-form steps (and ``import xmodal.align``) do without it."""
        import torch
        import torch.nn.functional as F
        from torch import nn

        from xmodal.align import training
        from xmodal.align.losses import symmetric_info_nce

        rng = training.seeded(self.seed)
        sides = (text, image)
        dtype = {m: self.projection_[m].dtype for m in sides}
        maps = nn.ParameterList(nn.Parameter(torch.tensor(self.projection_[m], dtype=torch.float32)) for m in sides)
        # Rows of each side: the pool, then the labelled pairs (text n_texts + k with image n_images + k).
        rows = {
            m: torch.tensor(np.concatenate([pools[m], pairs[m]]) - self.mean_[m], dtype=torch.float32) for m in sides
        }
        prior = {
            m: None
            if priors[m] is None
            else torch.tensor(np.concatenate([priors[m], self.prior_block(pairs[m], m)]), dtype=torch.float32)
            for m in sides
        }
        scale = torch.tensor(math.log(1.0 / self.head_temperature))
        n_texts, n_images, n_pairs = len(pools[text]), len(pools[image]), len(pairs[text])
        group_rows = training.rows_by_group(None, n_texts + self.pair_weight * n_pairs)

        def joined(side: int, picked: np.ndarray) -> torch.Tensor:
            m = sides[side]
            shared = F.normalize(rows[m][picked] @ maps[side], dim=1)
            block = prior[m]
            if block is None:
                return shared
            return torch.cat([shared, self.prior_weight * block[picked]], 1) / math.hypot(1.0, self.prior_weight)

        def batch_loss(batch: np.ndarray) -> torch.Tensor:
            labelled = batch >= n_texts
            k = (batch[labelled] - n_texts) % n_pairs
            texts, images = batch.copy(), np.empty_like(batch)
            texts[labelled], images[labelled] = n_texts + k, n_images + k
            images[~labelled] = _draw(plan[batch[~labelled]], rng)
            return symmetric_info_nce(joined(0, texts), joined(1, images), scale)

        optimiser = torch.optim.Adam(maps.parameters(), lr=self.head_lr)
        for start in range(0, self.head_epochs, self.replan):
            plan = self._plan(pools, priors, text, image)
            epochs = min(self.replan, self.head_epochs - start)
            training.train(
                maps, optimiser, batch_loss, None, group_rows, rng, epochs=epochs, batch_size=self.batch_size,
                patience=epochs,
            )  # fmt: skip
            self.projection_ = {m: maps[i].detach().numpy().astype(dtype[m]) for i, m in enumerate(sides)}

    def _transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        prior = None if self.prior_image is None else self.prior_block(x, modality)
        return self._joined(self._shared(x, modality), prior)

    def _shared(self, x: np.ndarray, modality: str) -> np.ndarray:
        """Rows in the CCA's space, unit length."""
        return unit_rows((x - self.mean_[modality]) @ self.projection_[modality])

    def _joined(self, shared: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
        """The final space: ``[shared, prior_weight * prior]`` (``shared`` alone without a prior)."""
        return shared if prior is None else np.hstack([shared, self.prior_weight * prior])

    def prior_block(self, x: np.ndarray, modality: str) -> np.ndarray:
        """The prior's view of preprocessed rows (:meth:`_prior_vectors`), centred, unit rows."""
        return unit_rows(self._prior_vectors(x, modality) - self.prior_mean_[modality])

    def _prior_vectors(self, x: np.ndarray, modality: str) -> np.ndarray:
        """``prior_space="text"``: text rows themselves, images as ConSE vectors; ``"classes"``:
        both as class distributions (images through the classifier, texts through their
        cosines to the class texts)."""
        prior = ClassifierPrior(self.classifier_weight_, self.classifier_bias_, self.class_texts_)
        if self.prior_space == "classes":
            if modality == self.prior_modality:
                return prior.image_classes(x, self.image_temperature)
            return prior.text_classes(x, self.text_temperature)
        return prior.vectors(x, self.temperature, self.top) if modality == self.prior_modality else x

    def _sides(self, modalities: tuple[str, ...]) -> tuple[str, str]:
        """``(text side, image side)``: the prior modality second."""
        if self.prior_image is not None and modalities[0] == self.prior_modality:
            return modalities[1], modalities[0]
        return modalities[0], modalities[1]

    def _build_prior(self, text_dim: int, image_dim: int) -> None:
        assert self.prior_image is not None and self.prior_text is not None
        prior = imagenet_prior(self.prior_image, self.prior_text)
        if prior.weight.shape[1] != image_dim or prior.classes.shape[1] != text_dim:
            raise ValueError(
                f"the prior of {self.prior_image} and {self.prior_text} maps {prior.weight.shape[1]}-d images to "
                f"{prior.classes.shape[1]}-d texts, but the embeddings are {image_dim}-d and {text_dim}-d: "
                "name the encoders that made them"
            )
        self.classifier_weight_, self.classifier_bias_, self.class_texts_ = prior.weight, prior.bias, prior.classes


class _RotatedSpace:
    """Steps 1-2: both modalities' PCA, a rotation of the text side onto the image side, and
    (with a prior) the prior block beside it; what pseudo-pairs are scored in. The pools'
    PCA rows and prior blocks do not change from round to round: they are computed once."""

    def __init__(self, pools: dict[str, np.ndarray], priors: dict[str, np.ndarray | None], r: int, text: str):
        self.text, self.image = text, next(m for m in pools if m != text)
        self.pca = {m: _pca(x, r) for m, x in pools.items()}
        self.pools = {m: self.reduced(x, m) for m, x in pools.items()}
        self.priors = priors
        self.rotation = np.eye(r)

    def reduced(self, x: np.ndarray, modality: str) -> np.ndarray:
        mean, basis = self.pca[modality]
        return unit_rows((x - mean) @ basis)

    def fit(self, text: np.ndarray, image: np.ndarray) -> None:
        self.rotation, _ = linalg.orthogonal_procrustes(self.reduced(text, self.text), self.reduced(image, self.image))

    def pseudo_pairs(self) -> dict[str, np.ndarray]:
        """Rows of the two pools that are mutual nearest neighbours under CSLS (k=10)."""
        scores = self._rows(self.image) @ self._rows(self.text).T
        scores = csls(scores, top_k_mean(scores, CSLS_K), top_k_mean(scores.T, CSLS_K))
        return dict(zip((self.text, self.image), _mutual_pairs(scores)))

    def _rows(self, modality: str) -> np.ndarray:
        """A pool in the current space: its PCA rows (rotated, on the text side), then its prior block."""
        shared = self.pools[modality] @ self.rotation if modality == self.text else self.pools[modality]
        prior = self.priors[modality]
        return shared if prior is None else unit_rows(np.hstack([shared, prior]))


def _mutual_pairs(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(text rows, image rows)`` of the mutual nearest neighbours of an images x texts score
    matrix: each text with its best image, kept when it is that image's best text."""
    best_image, best_text = scores.argmax(0), scores.argmax(1)
    texts = np.flatnonzero(best_text[best_image] == np.arange(scores.shape[1]))
    return texts, best_image[texts]


def _draw(plan_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column per row of a (non-negative) plan, drawn with probability proportional to
    the row's entries."""
    cumulative = np.cumsum(plan_rows, axis=1, dtype=np.float64)
    target = rng.random(len(plan_rows)) * cumulative[:, -1]
    return np.minimum((cumulative < target[:, None]).sum(1), plan_rows.shape[1] - 1)


def _sample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(rng.choice(len(x), n, replace=False))]


def _pca(x: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, first r principal directions as columns)`` of the rows of ``x``."""
    mean = x.mean(0)
    return mean, linalg.pca_basis(np.cov((x - mean).T, bias=True), r, len(x))
