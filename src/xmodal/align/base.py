"""The Aligner interface (scikit-learn style) shared by closed-form and trained aligners.

An aligner is fitted on row-paired embeddings, one array per modality, and maps any
modality's embeddings into a shared space where they can be compared::

    aligner = CCAAligner(n_components=128).fit({"text": t, "image": v})
    scores = aligner.transform(t_test, "text") @ aligner.transform(v_test, "image").T

Every aligner takes the same ``fit`` arguments (see :meth:`Aligner.fit`); closed-form ones
solve on the complete rows and have no use for the training-only ones. Hyper-parameters live
in ``__init__``; learned state ends in ``_``; ``save`` / ``load`` use the shared ``.npz``
format of :class:`~xmodal.core.estimator.Estimator`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, TypeVar

import numpy as np

from xmodal.align.statistics import Statistics
from xmodal.core.arrays import check_embeddings, unit_rows
from xmodal.core.estimator import Estimator, NotFittedError
from xmodal.store.engine import Engine
from xmodal.store.shards import Shards

A = TypeVar("A", bound="Aligner")
Embeddings = Mapping[str, np.ndarray]

__all__ = ["Aligner", "NotFittedError"]


class Aligner(Estimator):
    """Base class: closed-form subclasses implement ``_solve(statistics)`` (``statistical``: they
    see the rows only through their additive :class:`~xmodal.align.statistics.Statistics`) or
    ``_fit_partial(data, present)``, trained ones (``iterative``) ``_train(data, groups, present,
    validation, views)``; all implement ``_transform(x, modality)``.

    ``normalize=True`` L2-normalises every input row before anything else, which suits
    encoders trained for cosine similarity.
    """

    n_modalities: ClassVar[int | None] = 2  # None: any number >= 2
    iterative: ClassVar[bool] = False  # trained in epochs: uses groups, validation and views
    partial_rows: ClassVar[bool] = False  # closed form on rows that miss modalities: ``_fit_partial``
    statistical: ClassVar[bool] = False  # solved from statistics: ``fit_statistics``, ``partial_fit``
    unpaired_rows: ClassVar[bool] = False  # learns from values without a pair too (``partial_rows``)

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    # -- public API -----------------------------------------------------------------
    def fit(
        self: A,
        embeddings: Embeddings,
        *,
        groups: np.ndarray | None = None,
        present: Mapping[str, np.ndarray] | None = None,
        validation: Embeddings | None = None,
        views: Sequence[Embeddings] = (),
    ) -> A:
        """Fit on row-paired embeddings ``{modality: array (n, d_modality)}``; returns self.

        - ``groups``: one id per row (e.g. the image of each caption): rows of one group are
          never each other's negatives, and each epoch draws one row per group;
        - ``present``: ``{modality: bool per row}``, False where a row lacks the modality (its
          values are ignored); closed-form aligners use the rows that have every modality
          (those with ``partial_rows``, each pair's rows);
        - ``validation``: row-paired embeddings (one row per group) for early stopping;
          trained aligners carve a seeded share of the groups from the training rows when
          it is None;
        - ``views``: other views of the same rows (e.g. mirrored images), row-paired with
          ``embeddings``, that trained aligners also learn from (augmentation).

        Closed-form aligners have no epochs to stop or augment, and ignore ``groups``,
        ``validation`` and ``views`` (they are still checked).
        """
        data = self._validate_fit_input(embeddings)
        n = len(next(iter(data.values())))
        masks = _check_present(present, data, n)
        if groups is not None and np.shape(groups) != (n,):
            raise ValueError(f"groups must have one entry per row ({n}), got shape {np.shape(groups)}")
        checked_views = [self._check_like(v, data, f"view {i + 1}", rows=n) for i, v in enumerate(views)]
        checked_validation = None if validation is None else self._check_like(validation, data, "validation")
        self._forget()
        self.modalities_ = tuple(data)
        self.dims_ = {m: x.shape[1] for m, x in data.items()}
        try:
            if self.iterative:
                self._train(
                    self._preprocessed(data),
                    groups=groups,
                    present=masks,
                    validation=None if checked_validation is None else self._preprocessed(checked_validation),
                    views=[self._preprocessed(v) for v in checked_views],
                )
            elif self.partial_rows:
                present_all = {m: np.ones(n, dtype=bool) for m in data}
                self._fit_partial(self._preprocessed(data), present_all if masks is None else masks)
            else:
                complete = None if masks is None else np.logical_and.reduce(list(masks.values()))
                rows = data if complete is None else {m: x[complete] for m, x in data.items()}
                self._solve(Statistics.from_arrays(self._preprocessed(rows)))
        except BaseException:
            self._forget()  # a failed fit must not leave the aligner looking fitted
            raise
        return self

    def use_encoders(self, names: Mapping[str, str]) -> None:
        """Told the encoder of each modality (``{modality: encoder name}``) before a model is
        fitted; aligners that read the encoders themselves (a classifier prior) check or take
        them here; the others ignore them."""

    # -- closed form from additive statistics ------------------------------------------------
    def statistics(self, embeddings: Embeddings) -> Statistics:
        """The additive statistics of row-paired ``embeddings`` as this aligner fits them
        (preprocessed); the statistics of shards add up to those of all their rows."""
        self._check_statistical()
        return Statistics.from_arrays(self._preprocessed(self._validate_fit_input(embeddings)))

    def shard_statistics(
        self,
        shards: Mapping[str, Shards],
        rows: Mapping[str, np.ndarray] | None = None,
        *,
        engine: Engine | None = None,
    ) -> Statistics:
        """:meth:`statistics` of out-of-core rows (:meth:`Statistics.from_shards`: ``rows``
        pairs them, ``engine`` runs the blocks), in bounded memory."""
        self._check_statistical()
        if self.n_modalities is not None and len(shards) != self.n_modalities:
            raise ValueError(f"{type(self).__name__} aligns {self.n_modalities} modalities, got {list(shards)}")
        return Statistics.from_shards(shards, rows, preprocess=self._preprocess, engine=engine)

    def fit_statistics(self: A, statistics: Statistics, *, keep: bool = False) -> A:
        """Fit from ``statistics`` (of :meth:`statistics`, or their sum over shards): the same
        map as :meth:`fit` on all the rows, to rounding; with ``keep``, they are kept in
        ``statistics_`` (saved with the aligner) for :meth:`partial_fit` to add to; returns self."""
        self._check_statistical()
        if self.n_modalities is not None and len(statistics.modalities) != self.n_modalities:
            raise ValueError(
                f"{type(self).__name__} aligns {self.n_modalities} modalities, got statistics of {statistics.modalities}"
            )
        self._forget()
        self.modalities_ = statistics.modalities
        self.dims_ = statistics.dims
        try:
            self._solve(statistics)
        except BaseException:
            self._forget()
            raise
        if keep:
            self.statistics_ = statistics.to_state()
        return self

    def partial_fit(self: A, embeddings: Embeddings) -> A:
        """Add these row-paired rows to the statistics fitted so far (kept in ``statistics_``,
        saved with the aligner) and solve again; the first call starts them. Shards given one
        by one give the map of :meth:`fit` on them all, to rounding; returns self."""
        self._check_statistical()
        previous = getattr(self, "statistics_", None)
        if previous is not None and set(embeddings) != set(self.modalities_):
            raise ValueError(f"partial_fit continues a fit of {list(self.modalities_)}, got {list(embeddings)}")
        ordered = {m: embeddings[m] for m in self.modalities_} if previous is not None else embeddings
        total = self.statistics(ordered)
        if previous is not None:
            total = Statistics.from_state(self.modalities_, previous) + total
        return self.fit_statistics(total, keep=True)

    def _check_statistical(self) -> None:
        if not self.statistical:
            raise ValueError(
                f"{type(self).__name__} is not fitted from additive statistics; "
                "fit it on all its rows with fit() (statistics serve least squares, Procrustes and CCA)"
            )

    def accepts(self, dims: Mapping[str, int]) -> bool:
        """Whether embeddings of these dimensions (``{modality: dim}``) can be aligned at all."""
        return True

    def transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        """Map ``x`` (``n x d_modality``) into the shared space; float32."""
        self._check_fitted()
        if modality not in self.modalities_:
            raise ValueError(
                f"{type(self).__name__} was fitted on modalities {list(self.modalities_)}, not {modality!r}"
            )
        x = check_embeddings(x, f"{modality} embeddings")
        if x.shape[1] != self.dims_[modality]:
            raise ValueError(
                f"{modality} embeddings have dimension {x.shape[1]}, but "
                f"{type(self).__name__} was fitted on dimension {self.dims_[modality]}"
            )
        return np.ascontiguousarray(self._transform(self._preprocess(x), modality), np.float32)

    # -- for subclasses -----------------------------------------------------------------
    def _solve(self, statistics: Statistics) -> None:
        raise NotImplementedError

    def _fit_partial(self, data: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _train(
        self,
        data: dict[str, np.ndarray],
        groups: np.ndarray | None,
        present: dict[str, np.ndarray] | None,
        validation: dict[str, np.ndarray] | None,
        views: list[dict[str, np.ndarray]],
    ) -> None:
        raise NotImplementedError

    def _transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------
    def _preprocess(self, x: np.ndarray) -> np.ndarray:
        """Rows L2-normalised if ``normalize``; float32 (validated by check_embeddings)."""
        return unit_rows(x) if self.normalize else x

    def _preprocessed(self, data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {m: self._preprocess(x) for m, x in data.items()}

    def _validate_fit_input(self, embeddings: Embeddings) -> dict[str, np.ndarray]:
        if not isinstance(embeddings, Mapping) or len(embeddings) < 2:
            raise ValueError("fit() takes a dict {modality: embeddings} with at least 2 modalities")
        if self.n_modalities is not None and len(embeddings) != self.n_modalities:
            raise ValueError(
                f"{type(self).__name__} aligns exactly {self.n_modalities} modalities, "
                f"got {len(embeddings)}: {list(embeddings)}"
            )
        data = {m: check_embeddings(x, f"{m} embeddings") for m, x in embeddings.items()}
        rows = {m: x.shape[0] for m, x in data.items()}
        if len(set(rows.values())) != 1:
            raise ValueError(f"paired embeddings need the same number of rows, got {rows}")
        return data

    @staticmethod
    def _check_like(
        other: Embeddings, data: dict[str, np.ndarray], what: str, rows: int | None = None
    ) -> dict[str, np.ndarray]:
        """``other`` checked to have ``data``'s modalities and dimensions (and ``rows`` rows)."""
        if set(other) != set(data):
            raise ValueError(f"{what} modalities {sorted(other)} differ from the fitted ones {sorted(data)}")
        checked = {m: check_embeddings(other[m], f"{what} {m} embeddings") for m in data}
        for m, x in checked.items():
            if x.shape[1] != data[m].shape[1]:
                raise ValueError(f"{what} {m} embeddings have dimension {x.shape[1]}, expected {data[m].shape[1]}")
        counts = {len(x) for x in checked.values()}
        if len(counts) != 1 or (rows is not None and counts != {rows}):
            expected = f" ({rows}, as the training rows)" if rows is not None else ""
            raise ValueError(
                f"{what} embeddings must be row-paired{expected}, got {[len(x) for x in checked.values()]}"
            )
        return checked


def _check_present(
    present: Mapping[str, np.ndarray] | None, data: dict[str, np.ndarray], n: int
) -> dict[str, np.ndarray] | None:
    """``present[m]``: bool per row, False where the row lacks modality ``m``."""
    if present is None:
        return None
    unknown = set(present) - set(data)
    if unknown:
        raise ValueError(f"present names modalities that were not given: {sorted(unknown)}")
    masks = {}
    for m, mask in present.items():
        mask = np.asarray(mask)
        if mask.shape != (n,) or mask.dtype != bool:
            raise ValueError(f"present[{m!r}] must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}")
        masks[m] = mask
    return masks
