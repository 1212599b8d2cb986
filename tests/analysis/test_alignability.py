"""Alignability on a sample: known answers for spaces equal up to rotation, unrelated spaces,
and a relation that fades with noise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmodal.analysis.alignability import alignability, cknna, fitted_recall, mutual_knn


def spaces(noise: float, n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20)) @ rng.normal(size=(20, 40))
    rotation, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    return x, x @ rotation + noise * rng.normal(size=(n, 40))


def test_spaces_equal_up_to_rotation_score_perfectly():
    x, y = spaces(noise=0.0)
    scores = alignability(x, y)
    assert scores["fitted R@10"] == 100.0
    assert scores["CKA"] == pytest.approx(1.0) and scores["CKNNA"] == pytest.approx(1.0)
    assert scores["mutual kNN"] == 1.0


def test_unrelated_spaces_score_near_chance():
    x, _ = spaces(noise=0.0)
    y = np.random.default_rng(5).normal(size=x.shape)
    assert mutual_knn(x, y, k=10) < 0.05  # chance: 10 / 499 = 0.02
    assert abs(cknna(x, y, k=10)) < 0.1
    assert fitted_recall(x, y) < 20  # chance: 10 of the 100 items of a fold


def test_every_score_falls_as_noise_drowns_the_relation():
    by_noise = [alignability(*spaces(noise)) for noise in (1.0, 5.0, 20.0)]
    for name in ("fitted R@10", "CKA", "mutual kNN", "CKNNA"):
        values = [scores[name] for scores in by_noise]
        assert values[0] > values[1] > values[2], (name, values)


def test_bad_samples_are_refused():
    x, y = spaces(noise=1.0, n=60)
    with pytest.raises(ValueError, match="row-paired inputs, got 60 and 59 rows"):
        mutual_knn(x, y[:59])
    with pytest.raises(ValueError, match="k must be below the number of rows 60"):
        cknna(x, y, k=60)
    with pytest.raises(ValueError, match="at least 50 rows"):
        fitted_recall(x[:40], y[:40])


def test_the_command_ranks_encoder_pairs(tmp_path, xmodal):
    x, y = spaces(noise=2.0, n=120)
    header = {"xmodal": "manifest", "modalities": {"text": "vector", "image": "vector"}}
    lines = [json.dumps(header)] + [
        json.dumps({"id": str(i), "split": "train", "text": x[i].tolist(), "image": y[i].tolist()}) for i in range(120)
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    args = ["score-encoders", tmp_path / "m.jsonl", "--text-encoder", "vector", "--image-encoder", "vector"]
    result = xmodal(*args, "--pairs", 100, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["text"], row["image"]) == ("vector", "vector") and row["fitted R@10"] > 50 and 0 < row["CKA"] <= 1
    assert xmodal(*args, "--pairs", 100, "--json").output == result.output  # seeded
    table = xmodal(*args, "--pairs", 100)
    assert table.exit_code == 0 and "alignability on 100 sampled pairs" in table.output
