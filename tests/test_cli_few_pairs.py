"""The command line with a few pairs and many unpaired values: `xmodal fit --aligner self-training`
on a manifest whose items mostly have one modality (Flickr8k items)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

N_PAIRS, N_TRAIN, N_TEST = 30, 200, 100


@pytest.fixture(scope="module")
def few_pairs(flickr8k, tmp_path_factory) -> Path:
    """30 train items with an image and one caption; the other 170 train items split in two:
    their image alone, their 5 captions alone (other ids); 100 test items whole."""
    lines = []
    for i, item in enumerate(flickr8k.split("train").subset(N_TRAIN).items):
        image, captions = item.values["image"][0], list(item.values["text"])
        if i < N_PAIRS:
            lines.append({"id": item.id, "image": image, "text": captions[0]})
        else:
            lines += [{"id": f"{item.id}/image", "image": image}, {"id": f"{item.id}/texts", "texts": captions}]
    for item in flickr8k.split("test").subset(N_TEST).items:
        lines.append(
            {"id": item.id, "split": "test", "image": item.values["image"][0], "texts": list(item.values["text"])}
        )
    path = tmp_path_factory.mktemp("few-pairs") / "few.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.data
@pytest.mark.weights
def test_fit_learns_from_the_unpaired_values(few_pairs, cache_dir, tmp_path, xmodal):
    from xmodal.model import Model

    r10 = {}
    for aligner in ("procrustes-t2i", "self-training-imagenet"):
        out = tmp_path / f"{aligner}.npz"
        fitted = xmodal("fit", few_pairs, "--aligner", aligner, "--out", out, "--cache", cache_dir)
        assert fitted.exit_code == 0, fitted.output
        metrics = xmodal("eval", few_pairs, "--model", out, "--cache", cache_dir, "--json")
        assert metrics.exit_code == 0, metrics.output
        scores = json.loads(metrics.stdout)
        r10[aligner] = (scores["t2i/R@10"] + scores["i2t/R@10"]) / 2
    said = " ".join(fitted.output.split())
    assert f"on {N_PAIRS} pairs and {N_PAIRS + 170 * 5} text values, {N_TRAIN} image values" in said, (said, r10)
    model = Model.load(tmp_path / "self-training-imagenet.npz")
    params = model.aligner.get_params()
    assert (params["prior_image"], params["prior_text"]) == ("efficientnet-lite0", "minilm")
    assert model.about["values"] == {"text": N_PAIRS + 170 * 5, "image": N_TRAIN}
    assert model.aligner.pairs_ == N_PAIRS and model.aligner.pseudo_pairs_ > 0
    assert r10["self-training-imagenet"] >= r10["procrustes-t2i"] + 10, r10
