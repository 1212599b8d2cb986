"""The pair-budget planner: curves of held-out R@10 against training pairs, and the fitted law
that says how many pairs a target needs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from xmodal.bench.plan import PowerLaw, fit_power_law, pair_budget_curves, plan_rows
from xmodal.store import SplitEmbeddings


def test_a_planted_power_law_is_recovered_and_inverted():
    budgets = np.array([30, 100, 300, 1000, 3000, 30000], dtype=float)
    truth = PowerLaw(80.0, 120.0, 0.4)
    fitted = fit_power_law(budgets, [truth(n) for n in budgets])
    assert fitted is not None
    assert fitted.plateau == pytest.approx(80.0, abs=1e-3) and fitted.exponent == pytest.approx(0.4, abs=1e-4)
    assert fitted.pairs_for(60.0) == pytest.approx(6.0**2.5, rel=1e-3)  # (120 / 20) ** (1 / 0.4)
    assert fitted.pairs_for(85.0) == math.inf
    assert fit_power_law([100, 300], [10.0, 20.0]) is None  # two budgets cannot fix three parameters


def split(n_items: int, seed: int, noise: float = 1.0) -> SplitEmbeddings:
    """Two captions per item and one image, a planted linear relation (the same for every seed)."""
    maps = np.random.default_rng(99)
    text_map, image_map = maps.normal(size=(30, 40)), maps.normal(size=(30, 50))
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_items, 30))
    captions = np.repeat(latent, 2, axis=0) @ text_map + noise * rng.normal(size=(2 * n_items, 40))
    images = latent @ image_map + noise * rng.normal(size=(n_items, 50))
    return SplitEmbeddings(
        captions.astype(np.float32), images.astype(np.float32), np.arange(2 * n_items) // 2, np.arange(n_items)
    )


def test_curves_rise_with_pairs_are_seeded_and_cap_at_what_there_is():
    train, test = split(400, seed=1, noise=6.0), split(150, seed=2, noise=6.0)
    options = {"aligners": ["lstsq-t2i", "procrustes-t2i"], "budgets": [40, 100, 300, 5000], "draws": 3}
    result = pair_budget_curves(train, test, seed=0, **options)
    assert result.available == 800 and result.budgets == [40, 100, 300, 800]
    for curve in result.curves:
        assert [len(curve.scores[b]) for b in result.budgets] == [3, 3, 3, 1]  # all pairs: one point
        means = [curve.summary(b)[0] for b in result.budgets]
        assert means[0] < means[-1] and means[0] > 0 and means[-1] < 100
        assert curve.fit is not None and len(curve.draw_fits) == 3
    again = pair_budget_curves(train, test, seed=0, **options)
    assert again.curves[0].scores == result.curves[0].scores
    other = pair_budget_curves(train, test, seed=1, **options)
    assert other.curves[0].scores[40] != result.curves[0].scores[40]
    columns, rows = plan_rows(result, target=20.0)
    assert columns[-1] == "pairs for R@10 20" and len(rows) == 2 and rows[0][1].count("±") == 1
    json.dumps(result.to_json())


def test_the_command_plots_and_writes_its_curves(tmp_path, xmodal):
    train, test = split(200, seed=1, noise=6.0), split(60, seed=2, noise=6.0)
    header = {"xmodal": "manifest", "modalities": {"text": "vector", "image": "vector"}}
    lines = [json.dumps(header)]
    for name, part in (("train", train), ("test", test)):
        for i in range(len(part.image)):
            captions = part.text[part.text_items == i].tolist()
            lines.append(
                json.dumps({"id": f"{name}{i}", "split": name, "text": captions, "image": part.image[i].tolist()})
            )
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    result = xmodal("plan", tmp_path / "m.jsonl", "--text-encoder", "vector", "--image-encoder", "vector",
                    "--aligner", "lstsq-t2i", "--budget", 20, "--budget", 60, "--budget", 200, "--draws", 2,
                    "--target", 30, "--out", tmp_path / "plan", "--results", tmp_path / "RESULTS.md")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pairs for R@10 30" in result.output and "400 pairs available" in result.output
    assert (tmp_path / "plan" / "plan.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert saved["budgets"] == [20, 60, 200] and len(saved["curves"][0]["scores"]["20"]) == 2
    assert "<!-- begin plan -->" in (tmp_path / "RESULTS.md").read_text()
