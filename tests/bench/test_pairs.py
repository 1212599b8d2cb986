"""The text-image benchmark's fits: work shared between closed-form aligners gives each the
numbers of its own fit, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.align import Aligner, CCAAligner, LeastSquaresAligner, PivotAligner, ProcrustesAligner, linalg
from xmodal.align.statistics import Statistics
from xmodal.bench.pairs import _SharedFits
from xmodal.model import TrainingSet


def training_set(n: int = 300, seed: int = 0) -> TrainingSet:
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 6))
    text = shared @ rng.normal(size=(6, 8)) + 0.3 * rng.normal(size=(n, 8))
    image = shared @ rng.normal(size=(6, 12)) + 0.3 * rng.normal(size=(n, 12))
    return TrainingSet({"text": text.astype(np.float32), "image": image.astype(np.float32)})


def aligners() -> list[Aligner]:
    return [
        LeastSquaresAligner("text", "image", ridge=1.0),
        ProcrustesAligner("text", "image", n_components=4),
        CCAAligner(4, reg=1.0, weight_power=0.5),
        CCAAligner(6, reg=1.0, weight_power=1.0),
        CCAAligner(5, reg=0.1, weight_power=0.0),
        CCAAligner(5, reg=1.0, normalize=False),
        PivotAligner("image"),
    ]


def test_shared_fits_map_rows_as_separate_fits_and_share_statistics_and_cca_solves(monkeypatch):
    training = training_set()
    calls = {"statistics": 0, "cca": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(Statistics, "from_arrays", counted("statistics", Statistics.from_arrays))
    monkeypatch.setattr(linalg, "cca_from_covariances", counted("cca", linalg.cca_from_covariances))
    shared = _SharedFits(training, aligners())
    fitted = [shared.fit(aligner) for aligner in aligners()]
    assert calls == {"statistics": 2, "cca": 3}  # normalised or not; CCA of reg 1.0 (widest 6), 0.1, unnormalised
    for (aligner, seconds), alone in zip(fitted, aligners()):
        training.fit(alone)
        assert seconds > 0
        for modality, rows in training.embeddings.items():
            np.testing.assert_array_equal(aligner.transform(rows, modality), alone.transform(rows, modality))


def test_a_cca_wider_than_any_announced_is_fitted_on_its_own():
    training = training_set()
    shared = _SharedFits(training, [CCAAligner(4, reg=1.0)])
    wider, _ = shared.fit(CCAAligner(6, reg=1.0, weight_power=0.5))
    alone = training.fit(CCAAligner(6, reg=1.0, weight_power=0.5))
    text = training.embeddings["text"]
    np.testing.assert_array_equal(wider.transform(text, "text"), alone.transform(text, "text"))


def test_a_training_set_with_missing_modalities_is_fitted_as_usual():
    training = training_set()
    present = {"text": np.ones(300, bool), "image": np.arange(300) % 7 != 0}
    aligner, _ = _SharedFits(TrainingSet(training.embeddings, present=present), []).fit(CCAAligner(4, reg=1.0))
    alone = CCAAligner(4, reg=1.0).fit(training.embeddings, present=present)
    image = training.embeddings["image"]
    np.testing.assert_array_equal(aligner.transform(image, "image"), alone.transform(image, "image"))


@pytest.mark.data
@pytest.mark.weights
def test_bridge_rows_retrieve_through_the_train_pairs(data_root, cache_dir, monkeypatch):
    """With weight 1 a rewritten query is only the train pairs' vote: it still finds its image or
    captions far above chance (wiring the votes to the wrong rows would give chance); with
    weight 0 the bridge rows are the plain rows."""
    from xmodal.bench import pairs
    from xmodal.model import fitting

    def run(weight: float) -> dict[tuple[str, int], dict[str, float]]:
        monkeypatch.setattr(fitting, "BRIDGE", {"t2i": (30.0, weight), "i2t": (30.0, weight)})
        result = pairs.run_flickr8k(
            data_root, aligners=["procrustes-t2i"], limit=100, eval_split="dev", cache_dir=cache_dir,
            progress=False, bridge=True,
        )  # fmt: skip
        return {(r.aligner, r.csls_k): r.metrics for r in result.rows}

    voted, unchanged = run(1.0), run(0.0)
    for k in (0, 10):
        assert unchanged[("procrustes-t2i + bridge", k)] == unchanged[("procrustes-t2i", k)]
        for way in ("t2i", "i2t"):
            assert voted[("procrustes-t2i + bridge", k)][f"{way}/R@10"] > 3 * 10.0  # chance: 10 of 100 items
            assert voted[("procrustes-t2i + bridge", k)] != voted[("procrustes-t2i", k)]
