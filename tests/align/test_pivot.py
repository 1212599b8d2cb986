"""Pivot alignment: two modalities never seen together, aligned through a third."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.align import Aligner, PivotAligner
from xmodal.align.presets import make_aligner
from xmodal.evaluate import evaluate_retrieval


def planted(n: int = 300, d: int = 16, noise: float = 0.05, rows_seed: int = 0) -> dict[str, np.ndarray]:
    """Image latents, and speech and text made from them by fixed planted linear maps (plus noise)."""
    maps = np.random.default_rng(42)
    shapes = {"audio.fr": 12 + d, "text.en": 8 + d}
    planted_maps = {m: maps.normal(size=(d, dim)) for m, dim in shapes.items()}
    rng = np.random.default_rng(rows_seed)
    image = rng.normal(size=(n, d))
    views = {"image": image} | {
        m: image @ w + noise * rng.normal(size=(n, w.shape[1])) for m, w in planted_maps.items()
    }
    return {m: x.astype(np.float32) for m, x in views.items()}


def disjoint_masks(n: int) -> dict[str, np.ndarray]:
    """Speech on the first half of the rows, text on the second, images everywhere."""
    half = np.arange(n) < n // 2
    return {"image": np.ones(n, dtype=bool), "audio.fr": half, "text.en": ~half}


def test_speech_and_text_never_paired_retrieve_each_other_through_images():
    train, test = planted(rows_seed=0), planted(rows_seed=1)  # fresh rows of the same planted maps
    n = len(train["image"])
    masks = disjoint_masks(n)
    garbled = {m: np.where(masks[m][:, None], x, 1e6) for m, x in train.items()}  # absent values are ignored
    aligner = PivotAligner("image", ridge=1e-3, normalize=False).fit(garbled, present=masks)
    assert not (masks["audio.fr"] & masks["text.en"]).any()
    ids = np.arange(len(test["image"]))
    speech, text = aligner.transform(test["audio.fr"], "audio.fr"), aligner.transform(test["text.en"], "text.en")
    assert speech.shape == text.shape == (300, 16)
    assert evaluate_retrieval(speech, text, ids, ids)["R@1"] > 95
    assert evaluate_retrieval(text, speech, ids, ids)["R@1"] > 95
    # the same data with the speech rows scrambled against their images: near chance
    order = np.concatenate([np.random.default_rng(1).permutation(n // 2), np.arange(n // 2, n)])
    shuffled = dict(garbled, **{"audio.fr": garbled["audio.fr"][order]})
    broken = PivotAligner("image", ridge=1e-3, normalize=False).fit(shuffled, present=masks)
    scrambled = broken.transform(test["audio.fr"], "audio.fr")
    assert evaluate_retrieval(scrambled, text, ids, ids)["R@10"] < 15


def test_pivot_errors_name_the_problem():
    data = planted(n=40)
    with pytest.raises(ValueError, match="no image.sketch rows"):
        PivotAligner("image.sketch").fit(data)
    few = disjoint_masks(40) | {"audio.fr": np.arange(40) < 5}
    with pytest.raises(ValueError, match="audio.fr shares 5 rows with the pivot image, fewer than min_pairs=10"):
        PivotAligner("image").fit(data, present=few)


def test_pivot_preset_saves_and_loads(tmp_path):
    data = planted(n=80)
    aligner = make_aligner("pivot-image").fit(data, present=disjoint_masks(80))
    loaded = Aligner.load(aligner.save(tmp_path / "pivot"))
    assert isinstance(loaded, PivotAligner) and loaded.get_params() == aligner.get_params()
    for m, x in data.items():
        np.testing.assert_array_equal(loaded.transform(x[:5], m), aligner.transform(x[:5], m))
