"""Calibrate a model's search scores on held-out pairs (:mod:`xmodal.retrieval.calibration`).

For every ordered pair of the model's modalities (text and image: text->image and
image->text), scored as search scores them (cosine of unit rows, and CSLS with the model's
neighbourhood, the held-out queries as reference), the top ``top_k`` results of each held-out
query are the calibration data: their scores, and whether each is a true match (same item).
A second held-out split, when given, measures the expected calibration error of the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from xmodal.core.arrays import unit_rows
from xmodal.core.config import DEFAULT_CSLS_K
from xmodal.model.artifact import Model, route
from xmodal.retrieval.calibration import Calibrator, expected_calibration_error
from xmodal.retrieval.similarity import Scorer
from xmodal.retrieval.topk import topk
from xmodal.store.embeddings import ModalityEmbeddings

DEFAULT_TOP_K = 10


@dataclass(frozen=True)
class RouteOutcomes:
    """The top results of every held-out query of one route: scores and true-match flags,
    ``(queries, k)``, best first."""

    route: str
    scores: np.ndarray  # float64
    matches: np.ndarray  # bool
    gallery: int

    @property
    def ranks(self) -> np.ndarray:
        """The rank of each result (from 1)."""
        return np.broadcast_to(np.arange(1, self.scores.shape[1] + 1), self.scores.shape)


def route_outcomes(model: Model, held_out: ModalityEmbeddings, top_k: int = DEFAULT_TOP_K) -> Iterator[RouteOutcomes]:
    """:class:`RouteOutcomes` of every ordered pair of the model's modalities, cosine and CSLS,
    on ``held_out`` (embeddings by the model's encoders)."""
    shared = {m: unit_rows(model.transform(held_out.arrays[m], m)) for m in model.modalities}
    csls_k = model.csls_k or DEFAULT_CSLS_K
    for query in model.modalities:
        for gallery in model.modalities:
            if query == gallery:
                continue
            q, g = shared[query], shared[gallery]
            if not len(q) or not len(g):
                raise ValueError(f"the held-out split has no {query if not len(q) else gallery} values to calibrate on")
            k = min(top_k, len(g))
            for csls in (False, True):
                scores, columns = topk(Scorer(q, g, "cosine", csls_k=csls_k if csls else 0), k)
                matches = held_out.items[gallery][columns] == held_out.items[query][:, None]
                yield RouteOutcomes(route(query, gallery, csls), scores.astype(np.float64), matches, len(g))


def calibrate_model(
    model: Model,
    held_out: ModalityEmbeddings,
    *,
    check: ModalityEmbeddings | None = None,
    method: str = "isotonic",
    top_k: int = DEFAULT_TOP_K,
) -> dict[str, dict[str, float]]:
    """Fit the model's calibration (in place, replacing any) on ``held_out``; returns per route
    the pairs used, the share of matches and the expected calibration error on ``held_out``
    (``ece_fit``) and, with ``check``, on that other split: over the top ``top_k`` results
    (``ece_check``) and over each query's first result only (``ece_check_first``), the one a
    "no match" threshold decides on."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    calibration, report = {}, {}
    for outcomes in route_outcomes(model, held_out, top_k):
        calibrator = Calibrator(method).fit(outcomes.scores.ravel(), outcomes.matches.ravel(), outcomes.ranks.ravel())
        calibration[outcomes.route] = calibrator
        report[outcomes.route] = {
            "pairs": float(outcomes.scores.size),
            "match_rate": float(outcomes.matches.mean()),
            "gallery": float(outcomes.gallery),
            "ece_fit": _ece(calibrator, outcomes),
        }
    if check is not None:
        for outcomes in route_outcomes(model, check, top_k):
            calibrator = calibration[outcomes.route]
            first = RouteOutcomes(outcomes.route, outcomes.scores[:, :1], outcomes.matches[:, :1], outcomes.gallery)
            report[outcomes.route] |= {
                "ece_check": _ece(calibrator, outcomes),
                "ece_check_first": _ece(calibrator, first),
                "first_match_rate": float(first.matches.mean()),
            }
    model.calibration = calibration
    return report


def _ece(calibrator: Calibrator, outcomes: RouteOutcomes) -> float:
    predicted = calibrator.predict(outcomes.scores.ravel(), outcomes.ranks.ravel())
    return expected_calibration_error(predicted, outcomes.matches.ravel())
