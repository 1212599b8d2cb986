"""The search index on real Flickr8k items and real encoders: build, add, save, load, search."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from index_helpers import N_GALLERY, build_small_index, fit_small_aligner, gallery_items

from xmodal.data import DataError
from xmodal.gallery import items_from_folder, items_from_texts
from xmodal.index import ANN_THRESHOLD, Index, IndexMismatchError, resolve_kind
from xmodal.store import EmbeddingStore


@pytest.fixture(scope="module")
def index(flickr8k, cache_dir):
    return build_small_index(flickr8k, cache_dir)


@pytest.fixture(scope="module")
def saved(index, tmp_path_factory):
    return index.save(tmp_path_factory.mktemp("index") / "flickr8k-test")


def _ids(hits):
    return [h.id for h in hits]


def test_captions_find_their_images_well_above_chance(index):
    ranks = [_ids(index.search(item.captions[0], k=N_GALLERY)).index(item.id) for item in index.items]
    assert np.mean(np.array(ranks) < 5) >= 0.5  # chance: 5/24


def test_hits_are_the_exact_cosine_ranking(index):
    hits = index.search("two dogs play in the snow", k=5)
    query = index._encode_query("two dogs play in the snow", None)["text"][0]
    expected = np.argsort(-(index.embeddings @ query), kind="stable")[:5]
    assert _ids(hits) == [index.items[r].id for r in expected]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert hits[0].path.endswith(hits[0].id) and len(hits[0].captions) == 5


def test_an_image_query_finds_itself_first(index):
    item = index.items[7]
    best = index.search(image=item.path, k=1)[0]
    assert best.id == item.id and best.score == pytest.approx(1.0, abs=1e-5)


def test_csls_rescores_against_the_captions(index):
    text = "a man sits on the ground"
    query = index._encode_query(text, None)["text"][0]
    cosine = index.embeddings @ query
    k = index.csls_k
    r_q = np.sort(index.embeddings @ index.reference.T, axis=1)[:, -k:].mean(axis=1)
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
        (dict(text="a dog", k=N_GALLERY + 1), f"k must be between 1 and the gallery size {N_GALLERY}, got {N_GALLERY + 1}"),
        (dict(text="   "), "the text query is empty"),
        (dict(), "a query needs a text or an image"),
    ],
)
def test_bad_queries_are_refused_clearly(index, kwargs, message):
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


def test_save_then_load_searches_the_same(index, saved, cache_dir):
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["count"] == N_GALLERY and manifest["faiss_index"] == "flat"
    assert manifest["encoders"]["text"]["name"] == "minilm"
    assert manifest["encoders"]["image"]["cache_key"] == index.encoders["image"].cache_key
    assert manifest["aligner"] == {"class": "CCAAligner", "params": index.aligner.get_params(), "file": "aligner.npz"}
    assert set(manifest["versions"]) == {"xmodal", "faiss", "numpy"}
    table = pq.read_table(saved / "items.parquet")
    assert table.column_names == ["id", "path", "captions"] and table.num_rows == N_GALLERY
    loaded = Index.load(saved, cache_dir=cache_dir)
    assert loaded.items == index.items
    assert [h.to_dict() for h in loaded.search("a child in a pool", k=5, csls=True)] == [
        h.to_dict() for h in index.search("a child in a pool", k=5, csls=True)
    ]


def test_adding_items_matches_building_at_once(flickr8k, cache_dir, index, tmp_path):
    store = EmbeddingStore(cache_dir)
    items = gallery_items(flickr8k)
    grown = Index.build(items[:16], fit_small_aligner(flickr8k, cache_dir), store=store).save(tmp_path / "grown")
    misses = store.misses
    reloaded = Index.load(grown, cache_dir=cache_dir).add(items[16:], store=store)
    assert store.misses == misses + 2  # only the 8 new images and their captions are encoded
    np.testing.assert_allclose(reloaded.embeddings, index.embeddings, atol=1e-6)
    np.testing.assert_allclose(reloaded.reference, index.reference, atol=1e-6)
    assert _ids(reloaded.search("a dog", k=10)) == _ids(index.search("a dog", k=10))
    with pytest.raises(ValueError, match=f"duplicate item id {items[0].id!r}"):
        reloaded.add(items[:1], store=store)


def test_loading_refuses_other_encoders(saved, cache_dir, tmp_path):
    with pytest.raises(IndexMismatchError, match="built with text encoder 'minilm', not 'mpnet'"):
        Index.load(saved, text_encoder="mpnet", cache_dir=cache_dir)
    with pytest.raises(IndexMismatchError, match="image encoder 'efficientnet-lite0' is now .*torch"):
        Index.load(saved, backend="torch", cache_dir=cache_dir)
    copy = shutil.copytree(saved, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["encoders"]["text"]["cache_key"] = "minilm|st|0000"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="rebuild the index"):
        Index.load(copy, cache_dir=cache_dir)
    with pytest.raises(FileNotFoundError, match="not an xmodal index"):
        Index.load(tmp_path, cache_dir=cache_dir)
    with pytest.raises(ValueError, match="is not an xmodal index"):
        Index.load(saved, cache_dir=cache_dir).save(tmp_path)  # holds the copy


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_kinds_by_flag(flickr8k, cache_dir, index, kind):
    ann = build_small_index(flickr8k, cache_dir, kind=kind)
    assert ann.manifest()["faiss_index"] == kind
    for item in ann.items[:5]:
        assert ann.search(image=item.path, k=1)[0].id == item.id
    assert set(_ids(ann.search("a dog", k=N_GALLERY))) == set(_ids(index.search("a dog", k=N_GALLERY)))


def test_auto_kind_switches_to_hnsw_at_the_threshold():
    assert resolve_kind("auto", ANN_THRESHOLD - 1) == "flat"
    assert resolve_kind("auto", ANN_THRESHOLD) == "hnsw"
    with pytest.raises(ValueError, match="unknown index kind 'lsh'"):
        resolve_kind("lsh", 10)


def test_a_gallery_of_texts_searched_by_image(flickr8k, cache_dir, index, tmp_path):
    texts = tmp_path / "captions.txt"
    texts.write_text("\n".join(item.captions[0] for item in index.items[:10]) + "\n\n")
    items = items_from_texts(texts)
    assert [i.id for i in items[:2]] == ["captions:1", "captions:2"] and len(items) == 10
    gallery = Index.build(items, index.aligner, modality="text", store=EmbeddingStore(cache_dir))
    hits = gallery.search(image=index.items[0].path, k=10)
    assert {h.id for h in hits} == {i.id for i in items} and hits[0].path is None
    with pytest.raises(ValueError, match="CSLS needs reference queries"):
        gallery.search("a dog", csls=True)


def test_a_folder_of_images(flickr8k, cache_dir, index, tmp_path):
    (tmp_path / "sub").mkdir()
    for item in index.items[:3]:
        shutil.copy(item.path, tmp_path / "sub" / item.id)
    (tmp_path / "notes.md").write_text("not an image")
    items = items_from_folder(tmp_path)
    assert [i.id for i in items] == sorted(f"sub/{item.id}" for item in index.items[:3])
    gallery = Index.build(items, index.aligner, store=EmbeddingStore(cache_dir))
    assert gallery.search(image=index.items[1].path, k=1)[0].id == f"sub/{index.items[1].id}"
    with pytest.raises(DataError, match="no image files"):
        items_from_folder(tmp_path / "sub" / "empty")
