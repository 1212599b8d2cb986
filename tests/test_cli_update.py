"""`xmodal fit --updatable` and `xmodal update`: new pairs added to a saved model's statistics."""

from __future__ import annotations

import json

import numpy as np

from xmodal.model import Model


def manifest(path, splits: dict[str, str], seed: int = 0):
    """Precomputed text and image vectors with a planted linear relation, split as ``splits`` says."""
    rng = np.random.default_rng(seed)
    n = 240
    latent = rng.normal(size=(n, 10))  # full rank: Procrustes' rotation is well posed
    text, image = latent @ rng.normal(size=(10, 10)), latent @ rng.normal(size=(10, 14))
    text += 0.1 * rng.normal(size=text.shape)
    image += 0.1 * rng.normal(size=image.shape)
    header = {"xmodal": "manifest", "modalities": {"text": "vector", "image": "vector"}}
    lines = [json.dumps(header)]
    for i in range(n):
        split = splits["first"] if i < 100 else splits["second"] if i < 200 else "test"
        lines.append(json.dumps({"id": str(i), "split": split, "text": text[i].tolist(), "image": image[i].tolist()}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_update_with_new_pairs_equals_a_fit_on_all_of_them(tmp_path, xmodal):
    staged = manifest(tmp_path / "staged.jsonl", {"first": "train", "second": "more"})
    together = manifest(tmp_path / "together.jsonl", {"first": "train", "second": "train"})
    procrustes = ["--aligner", "procrustes-t2i", "--cache", tmp_path / "cache"]
    small = ["--aligner", "lstsq-t2i", "--cache", tmp_path / "cache"]
    for aligner in (procrustes, small):
        first = xmodal("fit", staged, "--out", tmp_path / "m.npz", "--updatable", *aligner)
        assert first.exit_code == 0, first.output
        updated = xmodal("update", tmp_path / "m.npz", staged, "--split", "more", "--out", tmp_path / "u.npz",
                         "--cache", tmp_path / "cache")  # fmt: skip
        assert updated.exit_code == 0, updated.output
        assert "added 100 pairs" in updated.output and "(200 in all)" in updated.output
        whole = xmodal("fit", together, "--out", tmp_path / "w.npz", *aligner)
        assert whole.exit_code == 0, whole.output
        one, other = Model.load(tmp_path / "u.npz"), Model.load(tmp_path / "w.npz")
        probe = np.random.default_rng(1).normal(size=(5, 10))
        np.testing.assert_allclose(one.transform(probe, "text"), other.transform(probe, "text"), rtol=1e-3, atol=1e-4)
        assert one.about["updates"] == [{"dataset": "staged", "split": "more", "pairs": 100}]


def test_update_needs_an_updatable_model(tmp_path, xmodal):
    staged = manifest(tmp_path / "staged.jsonl", {"first": "train", "second": "more"})
    cache = ["--cache", tmp_path / "cache"]
    assert xmodal("fit", staged, "--aligner", "procrustes-t2i", "--out", tmp_path / "m.npz", *cache).exit_code == 0
    refused = xmodal("update", tmp_path / "m.npz", staged, "--split", "more", "--out", tmp_path / "u.npz", *cache)
    assert refused.exit_code == 2 and "fit it with `xmodal fit --updatable`" in " ".join(refused.output.split())
    head = xmodal("fit", staged, "--aligner", "head-linear", "--updatable", "--out", tmp_path / "h.npz", *cache)
    assert head.exit_code == 2 and "HeadAligner is not fitted from statistics" in " ".join(head.output.split())
