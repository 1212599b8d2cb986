"""The searcher on real Flickr8k items and real encoders: build, add, save, load, search."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from xmodal.core.files import file_digest
from xmodal.data import DataError
from xmodal.model import EncoderMismatchError
from xmodal.search import Searcher, items_from_folder, items_from_texts
from xmodal.search.storage import ANN_THRESHOLD, current_generation, resolve_kind
from xmodal.store import EmbeddingStore

pytestmark = [pytest.mark.data, pytest.mark.weights]


@pytest.fixture(scope="module")
def index(small_index):
    return small_index


@pytest.fixture(scope="module")
def saved(index, tmp_path_factory):
    return index.save(tmp_path_factory.mktemp("index") / "flickr8k-test")


def _ids(hits):
    return [h.id for h in hits]


def test_captions_find_their_images_well_above_chance(index):
    ranks = [_ids(index.search(item.captions[0], k=len(index))).index(item.id) for item in index.items]
    assert np.mean(np.array(ranks) < 5) >= 0.5  # chance: 5/24


def test_hits_are_the_exact_cosine_ranking(index):
    hits = index.search("two dogs play in the snow", k=5)
    query = index._encode_query({"text": "two dogs play in the snow"})["text"][0]
    expected = np.argsort(-(index.storage.embeddings @ query), kind="stable")[:5]
    assert _ids(hits) == [index.items[r].id for r in expected]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert hits[0].path.endswith(hits[0].id) and len(hits[0].captions) == 5


def test_an_image_query_finds_itself_first(index):
    item = index.items[7]
    best = index.search(image=item.path, k=1)[0]
    assert best.id == item.id and best.score == pytest.approx(1.0, abs=1e-5)


def test_csls_rescores_against_the_captions(index):
    text = "a man sits on the ground"
    query = index._encode_query({"text": text})["text"][0]
    cosine = index.storage.embeddings @ query
    k = index.csls_k
    assert k == 10  # the model's scoring setting
    r_q = np.sort(index.storage.embeddings @ index.storage.reference.T, axis=1)[:, -k:].mean(axis=1)
    csls = 2 * cosine - np.sort(cosine)[-k:].mean() - r_q
    hits = index.search(text, k=5, csls=True)
    assert _ids(hits) == [index.items[r].id for r in np.argsort(-csls, kind="stable")[:5]]
    assert [h.score for h in hits] == pytest.approx(np.sort(csls)[::-1][:5], abs=1e-5)


def test_fused_text_and_image_queries(index):
    item = index.items[3]
    for fusion in ("mean", "score"):
        hits = index.search("people sit at a table", image=item.path, k=3, fusion=fusion)
        assert hits[0].id == item.id
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        index.search("people", image=item.path, fusion="max")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(text="a dog", k=0), "k must be >= 1, got 0"),
        (dict(text="a dog", k=25), "k must be between 1 and the gallery size 24, got 25"),
        (dict(text="   "), "the text query is empty"),
        (dict(), "a query needs a text, a file, or both"),
    ],
)
def test_bad_queries_are_refused_clearly(index, kwargs, message):
    assert len(index) == 24
    with pytest.raises(ValueError, match=message):
        index.search(**kwargs)


def test_csls_needs_text_queries(index):
    with pytest.raises(ValueError, match="CSLS applies to text queries only"):
        index.search(image=index.items[0].path, csls=True)


def test_unknown_id_and_unreadable_image(index, tmp_path):
    assert index.item(index.items[2].id) == index.items[2]
    with pytest.raises(KeyError, match="unknown item id 'nope.jpg'"):
        index.item("nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="not a recognised image format"):
        index.search(image=bad)


def test_save_then_load_searches_the_same(index, saved, models_dir):
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["count"] == len(index) and manifest["faiss_index"] == "flat" and manifest["model"] == "model.npz"
    assert manifest["encoders"]["text"]["name"] == "minilm"
    assert manifest["encoders"]["image"]["cache_key"] == index.encoders["image"].cache_key
    assert manifest["aligner"] == {"class": "CCAAligner", "params": index.model.aligner.get_params()}
    assert manifest["scoring"] == {"metric": "cosine", "csls_k": 10}
    assert set(manifest["versions"]) == {"xmodal", "faiss", "numpy"}
    table = pq.read_table(current_generation(saved) / "items.parquet")
    assert table.column_names == ["id", "path", "captions"] and table.num_rows == len(index)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["flickr8k-test"]  # no temporary folder left
    loaded = Searcher.load(saved, models_dir=models_dir)
    assert loaded.items == index.items
    assert [h.to_dict() for h in loaded.search("a child in a pool", k=5, csls=True)] == [
        h.to_dict() for h in index.search("a child in a pool", k=5, csls=True)
    ]


def test_adding_items_matches_building_at_once(gallery_items, small_model, models_dir, index, tmp_path):
    store = EmbeddingStore(tmp_path / "cache")  # empty: every miss is an encode
    items = gallery_items
    grown = Searcher.build(items[:16], small_model, store=store, models_dir=models_dir).save(tmp_path / "grown")
    assert store.misses == 16 + 80
    reloaded = Searcher.load(grown, models_dir=models_dir).add(items[16:], store=store)
    assert store.misses == 16 + 80 + 8 + 40  # only the 8 new images and their captions are encoded
    np.testing.assert_allclose(reloaded.storage.embeddings, index.storage.embeddings, atol=1e-6)
    np.testing.assert_allclose(reloaded.storage.reference, index.storage.reference, atol=1e-6)
    assert _ids(reloaded.search("a dog", k=10)) == _ids(index.search("a dog", k=10))
    with pytest.raises(ValueError, match=f"duplicate item id {items[0].id!r}"):
        reloaded.add(items[:1], store=store)


def test_loading_refuses_other_encoders(saved, models_dir, tmp_path):
    with pytest.raises(
        EncoderMismatchError, match="text encoder 'mpnet' was asked for, but .* fitted on text encoder 'minilm'"
    ):
        Searcher.load(saved, encoders={"text": "mpnet"}, models_dir=models_dir)
    with pytest.raises(EncoderMismatchError, match="backend 'torch' was asked for, but .* fitted with backend 'onnx'"):
        Searcher.load(saved, backend="torch", models_dir=models_dir)
    copy = shutil.copytree(saved, tmp_path / "copy")
    generation = current_generation(copy)
    model = np.load(generation / "model.npz")
    header = json.loads(str(model["header"]))
    header["model"]["encoders"]["text"]["cache_key"] = "minilm|st|0000"
    np.savez(generation / "model.npz", **{**{k: model[k] for k in model.files}, "header": np.array(json.dumps(header))})
    manifest = json.loads((generation / "manifest.json").read_text())  # a consistent edit, not a corruption
    manifest["files"]["model.npz"] = file_digest(generation / "model.npz")
    (generation / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EncoderMismatchError, match="text encoder 'minilm' is now .* fitted with 'minilm|st|0000'"):
        Searcher.load(copy, models_dir=models_dir)
    with pytest.raises(FileNotFoundError, match="not an xmodal index"):
        Searcher.load(tmp_path, models_dir=models_dir)
    with pytest.raises(ValueError, match="is not an xmodal index"):
        Searcher.load(saved, models_dir=models_dir).save(tmp_path)  # holds the copy


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_kinds_by_flag(gallery_items, small_model, cache_dir, models_dir, index, kind):
    ann = Searcher.build(gallery_items, small_model, kind=kind, store=EmbeddingStore(cache_dir), models_dir=models_dir)
    assert ann.storage.manifest()["faiss_index"] == kind
    for item in ann.items[:5]:
        assert ann.search(image=item.path, k=1)[0].id == item.id
    assert set(_ids(ann.search("a dog", k=len(index)))) == set(_ids(index.search("a dog", k=len(index))))


def test_auto_kind_switches_to_hnsw_at_the_threshold():
    assert resolve_kind("auto", ANN_THRESHOLD - 1) == "flat"
    assert resolve_kind("auto", ANN_THRESHOLD) == "hnsw"
    with pytest.raises(ValueError, match="unknown index kind 'lsh'"):
        resolve_kind("lsh", 10)


def test_a_gallery_of_texts_searched_by_image(cache_dir, models_dir, index, tmp_path):
    texts = tmp_path / "captions.txt"
    texts.write_text("\n".join(item.captions[0] for item in index.items[:10]) + "\n\n")
    items = items_from_texts(texts)
    assert [i.id for i in items[:2]] == ["captions:1", "captions:2"] and len(items) == 10
    gallery = Searcher.build(
        items, index.model, modality="text", store=EmbeddingStore(cache_dir), models_dir=models_dir
    )
    hits = gallery.search(image=index.items[0].path, k=10)
    assert {h.id for h in hits} == {i.id for i in items} and hits[0].path is None
    with pytest.raises(ValueError, match="CSLS needs reference queries"):
        gallery.search("a dog", csls=True)


def test_a_folder_of_images(cache_dir, models_dir, index, tmp_path):
    (tmp_path / "sub").mkdir()
    for item in index.items[:3]:
        shutil.copy(item.path, tmp_path / "sub" / item.id)
    (tmp_path / "notes.md").write_text("not an image")
    items = items_from_folder(tmp_path)
    assert [i.id for i in items] == sorted(f"sub/{item.id}" for item in index.items[:3])
    gallery = Searcher.build(items, index.model, store=EmbeddingStore(cache_dir), models_dir=models_dir)
    assert gallery.search(image=index.items[1].path, k=1)[0].id == f"sub/{index.items[1].id}"
    with pytest.raises(DataError, match="no image files"):
        items_from_folder(tmp_path / "sub" / "empty")
