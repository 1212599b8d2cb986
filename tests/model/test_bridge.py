"""The training pairs as a bridge for queries: `xmodal fit --bridge`, the model file, the
searcher and the service (real Flickr8k items, minilm + efficientnet-lite0), and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from xmodal.align import CCAAligner
from xmodal.core.arrays import unit_rows
from xmodal.core.estimator import read_extra
from xmodal.data import PairedDataset
from xmodal.model import EncoderRecord, Model, TrainingSet, fit_bridges, fit_model
from xmodal.retrieval.rerank import BRIDGE
from xmodal.search import Searcher
from xmodal.serve import create_app
from xmodal.store import EmbeddingStore, embed_split

N_TRAIN = 100
ENCODERS = {"text": "minilm", "image": "efficientnet-lite0"}


@pytest.fixture(scope="module")
def bridged(flickr8k, cache_dir, models_dir):
    """Weighted CCA (32-d) on the pairs of the first 100 train items, with its bridges; and
    those items' embeddings."""
    train = PairedDataset("flickr8k-small", flickr8k.split("train").items[:N_TRAIN])
    store = EmbeddingStore(cache_dir)
    aligner = CCAAligner(n_components=32, reg=1.0, weight_power=0.5)
    model = fit_model(
        train, aligner, store, encoders=ENCODERS, models_dir=models_dir, progress=False, bridge=True
    )  # fmt: skip
    return model, embed_split(train.split("train"), store, *ENCODERS.values(), models_dir=models_dir, progress=False)


@pytest.mark.data
@pytest.mark.weights
def test_captions_vote_with_their_image_and_images_with_their_captions(bridged):
    model, train = bridged
    assert set(model.bridges) == {"text->image", "image->text"}
    t2i, i2t = model.bridges["text->image"], model.bridges["image->text"]
    assert (t2i.beta, t2i.weight) == BRIDGE["t2i"] and (i2t.beta, i2t.weight) == BRIDGE["i2t"]
    text_rows, image_rows = train.pair_rows()
    text = model.transform(train.text[text_rows], "text")
    image = unit_rows(model.transform(train.image, "image"))
    assert t2i.bank_.shape == (5 * N_TRAIN, 32) and i2t.bank_.shape == (N_TRAIN, 32)
    np.testing.assert_allclose(t2i.bank_, text, atol=1e-6)
    np.testing.assert_allclose(unit_rows(t2i.votes_), image[image_rows], atol=1e-5)  # each caption: its image
    captions = unit_rows(text)
    means = np.stack([captions[image_rows == i].mean(0) for i in range(N_TRAIN)])
    np.testing.assert_allclose(i2t.votes_, means, atol=1e-5)  # each image: the mean of its captions
    # a query rewritten as the bridge says: (1 - weight) u(q) + weight * the votes of its neighbours
    query = model.transform(train.text[text_rows[:3]], "text")
    rewritten = model.transform_queries(train.text[text_rows[:3]], "text", "image")
    assert not np.allclose(rewritten, unit_rows(query))
    np.testing.assert_allclose(rewritten, t2i.transform(query), atol=1e-6)


@pytest.mark.data
@pytest.mark.weights
def test_a_bridged_model_saves_loads_searches_and_serves(bridged, gallery_items, cache_dir, models_dir, tmp_path):
    model, _ = bridged
    path = model.save(tmp_path / "bridged.npz")
    stored = read_extra(path)
    assert stored["bridge0/votes"].shape == (N_TRAIN, 32)  # an image's vote is stored once, not per caption
    loaded = Model.load(path)
    for key, bridge in model.bridges.items():
        np.testing.assert_array_equal(loaded.bridges[key].bank_, bridge.bank_)
        np.testing.assert_array_equal(loaded.bridges[key].votes_, bridge.votes_)
        assert loaded.bridges[key].get_params() == bridge.get_params()
    index = Searcher.build(gallery_items, loaded, store=EmbeddingStore(cache_dir), models_dir=models_dir)
    query = gallery_items[5].captions[2]
    encoded = index.encoders["text"].encode([query])
    rewritten = unit_rows(loaded.bridges["text->image"].transform(loaded.transform(encoded, "text")))
    expected = np.argsort(-(index.storage.embeddings @ rewritten[0]), kind="stable")[:10]
    hits = index.search(query, k=10)
    assert [h.id for h in hits] == [gallery_items[i].id for i in expected]
    np.testing.assert_allclose([h.score for h in hits], (index.storage.embeddings @ rewritten[0])[expected], atol=1e-5)
    # CSLS's reference queries (the gallery's captions) go through the bridge as the queries do
    captions = [c for item in gallery_items for c in item.captions]
    reference = loaded.transform_queries(index.encoders["text"].encode(captions), "text", "image")
    np.testing.assert_allclose(index.storage.reference, unit_rows(reference), atol=1e-5)
    with TestClient(create_app(index), base_url="http://localhost") as client:
        assert set(client.get("/health").json()["bridged"]) == {"text->image", "image->text"}
        served = client.get("/search", params={"q": query, "k": 10}).json()["results"]
        assert [r["id"] for r in served] == [h.id for h in hits]


def manifest(path):
    """Precomputed text and image vectors with a planted linear relation: 150 train, 40 test items."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(190, 8))
    text, image = latent @ rng.normal(size=(8, 12)), latent @ rng.normal(size=(8, 10))
    header = {"xmodal": "manifest", "modalities": {"text": "vector", "image": "vector"}}
    rows = [
        {"id": str(i), "split": "train" if i < 150 else "test", "text": text[i].tolist(), "image": image[i].tolist()}
        for i in range(190)
    ]
    path.write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")
    return path


def test_fit_bridge_from_the_command_line_and_what_it_refuses(tmp_path, xmodal):
    data, cache = manifest(tmp_path / "planted.jsonl"), ["--cache", tmp_path / "cache"]
    fitted = xmodal("fit", data, "--aligner", "procrustes-t2i", "--bridge", "--out", tmp_path / "m.npz", *cache)
    assert fitted.exit_code == 0, fitted.output
    assert "bridges: text->image, image->text" in " ".join(fitted.output.split())
    model = Model.load(tmp_path / "m.npz")
    # one value per item on both sides: each bank holds every training item once, with i2t's settings
    assert {k: (len(b.bank_), b.beta, b.weight) for k, b in model.bridges.items()} == {
        "text->image": (150, *BRIDGE["i2t"]), "image->text": (150, *BRIDGE["i2t"])
    }  # fmt: skip
    evaluated = xmodal("eval", data, "--model", tmp_path / "m.npz", "--json", *cache)
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)
    assert metrics["t2i/R@10"] > 90 and metrics["i2t/R@10"] > 90  # a planted relation: the bridge keeps it
    refused = xmodal("fit", data, "--bridge", "--updatable", "--out", tmp_path / "u.npz", *cache)
    assert refused.exit_code == 2 and "cannot go with --updatable" in " ".join(refused.output.split())
    assert not (tmp_path / "u.npz").exists()


def test_a_bridge_needs_complete_pairs_of_two_modalities():
    rng = np.random.default_rng(0)
    rows = {m: rng.normal(size=(20, 6)).astype(np.float32) for m in ("text", "image", "audio")}
    aligner = CCAAligner(n_components=4)
    with pytest.raises(ValueError, match="complete pairs of two modalities"):
        fit_bridges(aligner, TrainingSet(rows, np.arange(20)))
    pairs = {m: rows[m] for m in ("text", "image")}
    present = {"text": np.ones(20, bool), "image": np.r_[np.ones(10, bool), np.zeros(10, bool)]}
    with pytest.raises(ValueError, match="with missing values"):
        fit_bridges(aligner.fit(pairs), TrainingSet(pairs, np.arange(20), present))
    with pytest.raises(ValueError, match="the item of each pair"):
        fit_bridges(aligner, TrainingSet(pairs))


def test_a_model_file_whose_bridge_lacks_its_arrays_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    pairs = {m: rng.normal(size=(30, 6)).astype(np.float32) for m in ("text", "image")}
    training = TrainingSet(pairs, np.arange(30))
    aligner = training.fit(CCAAligner(n_components=4))
    records = {m: EncoderRecord("vector", None, 6) for m in pairs}
    path = Model(aligner, records, bridges=fit_bridges(aligner, training)).save(tmp_path / "m.npz")
    assert set(Model.load(path).bridges) == {"text->image", "image->text"}
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(str(arrays.pop("header")))
    header["model"]["bridges"]["text->text"] = {"beta": 1.0, "weight": 0.5, "neighbours": 5}
    np.savez(path, header=np.array(json.dumps(header)), **arrays)
    with pytest.raises(ValueError, match=r"m.npz: the bridge of text->text lacks its arrays \(bridge2/bank"):
        Model.load(path)
