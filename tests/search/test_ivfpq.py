"""IVF-PQ beyond memory: the parameter rule; build, load and search on seeded clustered vectors
against exact streamed search; exact re-ranking; adding rows; damaged files; the ``ivfpq``
index kind saved as generations; ``xmodal index build --kind ivfpq`` end to end."""

from __future__ import annotations

import ctypes
import json
import os
import shutil

import faiss
import numpy as np
import pytest

from xmodal.align import CCAAligner
from xmodal.model import EncoderRecord, Model
from xmodal.retrieval.topk import search as exact_search
from xmodal.retrieval.topk import stream_topk
from xmodal.search import IndexItem, IndexStorage, ivfpq
from xmodal.search.ivfpq import IvfPqError, IvfPqIndex, IvfPqParams, RowSource, choose_params
from xmodal.search.storage import current_generation
from xmodal.store.shards import ShardError, Shards, write_shards

N, DIM, K = 100_000, 64, 10


def clustered(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """Unit rows of a seeded mixture: 500 cluster centres and the spread around them drawn
    with a power-law spectrum (variance ∝ 1/j) in a random basis; ``seed`` picks the draw."""
    world = np.random.default_rng(0)
    scale = 1 / np.sqrt(np.arange(1, dim + 1))
    basis = np.linalg.qr(world.standard_normal((dim, dim)))[0] * (scale / np.linalg.norm(scale))
    centres = world.standard_normal((500, dim)) @ basis.T
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(500, size=n)] + 0.7 * rng.standard_normal((n, dim)) @ basis.T
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread():
    """One FAISS thread: the tests share the machine's cores (spinning OpenMP threads of a busy
    machine make k-means several times slower); the thread count is restored after."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def vectors(tmp_path_factory) -> Shards:
    """100,000 rows in 4 shards of 30,000, 30,000, 30,000 and 10,000."""
    rows = clustered(N, seed=1)
    return write_shards(
        tmp_path_factory.mktemp("ivfpq") / "vectors", [rows[i : i + 30_000] for i in range(0, N, 30_000)]
    )


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(300, seed=2)


@pytest.fixture(scope="module")
def truth(vectors, queries) -> tuple[np.ndarray, np.ndarray]:
    return stream_topk(queries, vectors.batches(), K)


@pytest.fixture(scope="module")
def built(vectors) -> IvfPqIndex:
    """Built out of core with parts of 40,000 codes: three parts written, mapped and merged."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ivfpq, "PART_ROWS", 40_000)
        return IvfPqIndex.build(vectors, vectors.folder.parent / "index")


# -- the parameter rule --------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "dim", "expected"),
    [
        (5_000_000, 256, IvfPqParams(n_lists=8192, m=64, train_rows=524_288, nprobe=64, rerank=256)),
        (1_000_000, 256, IvfPqParams(n_lists=4096, m=64, train_rows=262_144, nprobe=32, rerank=256)),
        (100_000, 64, IvfPqParams(n_lists=1024, m=16, train_rows=65_536, nprobe=16, rerank=256)),
        (1_000, 32, IvfPqParams(n_lists=16, m=8, train_rows=1_000, nprobe=16, rerank=256, bits=4)),
        (12, 32, IvfPqParams(n_lists=1, m=8, train_rows=12, nprobe=1, rerank=256, bits=1)),
        (1, 30, IvfPqParams(n_lists=1, m=6, train_rows=1, nprobe=1, rerank=256, bits=1)),
        (50_000, 7, IvfPqParams(n_lists=1024, m=1, train_rows=50_000, nprobe=16, rerank=256)),
    ],
)
def test_the_parameter_rule(n, dim, expected):
    assert choose_params(n, dim) == expected


def test_opq_only_with_8_bit_codes_and_parameters_are_checked():
    assert choose_params(100_000, 64, opq=True).opq and not choose_params(1_000, 64, opq=True).opq
    with pytest.raises(ValueError, match="n_lists must be >= 1, got 0"):
        IvfPqParams(n_lists=0, m=8, train_rows=100, nprobe=1, rerank=10)
    with pytest.raises(ValueError, match="bits must be in 1..16, got 17"):
        IvfPqParams(n_lists=4, m=8, train_rows=100, nprobe=1, rerank=10, bits=17)
    with pytest.raises(ValueError, match="m=5 sub-quantizers must divide the dimension 64"):
        IvfPqIndex.from_rows(clustered(500, 3), IvfPqParams(n_lists=4, m=5, train_rows=500, nprobe=1, rerank=10))


# -- exact streamed search -----------------------------------------------------------


@pytest.mark.parametrize("block", [1, 37, 1000])
def test_stream_topk_equals_exact_search(block):
    rng = np.random.default_rng(5)
    gallery = clustered(1000, seed=6, dim=16)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores, ids = stream_topk(queries, ((i, gallery[i : i + block]) for i in range(0, 1000, block)), 7)
    expected_scores, expected_ids = exact_search(queries, gallery, 7)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_stream_topk_breaks_ties_by_the_lower_id_across_blocks():
    scores = np.random.default_rng(3).integers(0, 4, size=(25, 60)).astype(np.float32)
    blocks = [(i, scores.T[i : i + 7]) for i in range(0, 60, 7)][::-1]  # any order of blocks
    values, ids = stream_topk(np.eye(25, dtype=np.float32), blocks, 9)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :9]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=1))


def test_stream_topk_refuses_bad_input():
    q = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="k must be between 1 and the gallery size 5, got 6"):
        stream_topk(q, [(0, np.ones((3, 4))), (3, np.ones((2, 4)))], 6)
    with pytest.raises(ValueError, match="the block of rows from 3 has shape \\(2, 5\\); the queries are 4-d"):
        stream_topk(q, [(0, np.ones((3, 4))), (3, np.ones((2, 5)))], 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        stream_topk(q, [(0, np.ones((3, 4)))], 0)
    with pytest.raises(ValueError, match="gallery size 0"):
        stream_topk(q, [], 1)


# -- build, load, search ---------------------------------------------------------------


def test_build_writes_its_files_atomically(built, vectors):
    folder = vectors.folder.parent / "index"
    assert sorted(p.name for p in folder.iterdir()) == ["ivfpq.index", "ivfpq.ivfdata", "ivfpq.json"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["index", "vectors"]  # no temporary folder left
    info = json.loads((folder / "ivfpq.json").read_text())
    assert info["count"] == N and info["params"] == choose_params(N, DIM).__dict__ and info["trained_for"] == N
    assert len(built) == N and set(built.timings) == {"train_s", "fill_s", "merge_s"}
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(built._parts[0]).invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists)  # one merged list file, memory-mapped
    assert all(isinstance(rows, np.memmap) for rows in built.rows._parts)  # the exact rows too


def test_recall_against_exact_streamed_search(built, queries, truth):
    _, ids = built.search(queries, K)
    assert recall(ids, truth[1]) >= 0.97  # measured 0.999 (nprobe 16 of 1024 lists, 256 re-ranked)
    _, fewer = built.search(queries, K, nprobe=1, rerank=K)
    assert recall(fewer, truth[1]) < 0.8  # the settings matter: 0.59 measured


def test_returned_scores_are_exact_inner_products(built, vectors, queries):
    scores, ids = built.search(queries, K)
    exact = np.einsum("qkd,qd->qk", vectors.take(ids.ravel()).reshape(*ids.shape, DIM), queries)
    np.testing.assert_allclose(scores, exact, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    alone = [built.search(q[None], K) for q in queries[:20]]
    np.testing.assert_array_equal(np.concatenate([i for _, i in alone]), ids[:20])


def test_every_list_and_every_candidate_is_exact_search():
    rows = clustered(3000, seed=4)
    index = IvfPqIndex.from_rows(rows)
    queries = clustered(50, seed=5)
    scores, ids = index.search(queries, K, nprobe=index.params.n_lists, rerank=3000)
    expected_scores, expected_ids = stream_topk(queries, [(0, rows)], K)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)


def test_the_disk_index_searches_as_the_same_index_in_memory(built, vectors, queries):
    in_memory = IvfPqIndex.from_rows(vectors)  # same seed: same sample, quantizers and codes
    assert len(in_memory) == N
    for nprobe, rerank in [(16, 256), (2, 20)]:
        np.testing.assert_array_equal(
            in_memory.search(queries, K, nprobe, rerank)[1], built.search(queries, K, nprobe, rerank)[1]
        )
    reloaded = IvfPqIndex.load(vectors.folder.parent / "index", vectors)
    np.testing.assert_array_equal(reloaded.search(queries, K)[1], built.search(queries, K)[1])


def test_opq_rotates_before_the_product_quantizer(tmp_path, monkeypatch):
    monkeypatch.setattr(ivfpq, "OPQ_ITERATIONS", 2)  # the code path, not the rotation's quality
    rows, queries = clustered(10_000, seed=14, dim=32), clustered(100, seed=15, dim=32)
    vectors = write_shards(tmp_path / "vectors", [rows])
    index = IvfPqIndex.build(vectors, tmp_path / "index", choose_params(len(rows), 32, opq=True))
    assert index.params.opq and isinstance(index._parts[0], faiss.IndexPreTransform)
    truth = stream_topk(queries, [(0, rows)], K)[1]
    assert recall(index.search(queries, K)[1], truth) >= 0.9  # measured 0.95
    exhaustive = index.search(queries, K, nprobe=index.params.n_lists, rerank=len(rows))[1]
    np.testing.assert_array_equal(exhaustive, truth)


def test_a_tiny_collection_is_searched_exactly():
    rows = clustered(12, seed=7, dim=32)
    index = IvfPqIndex.from_rows(rows)
    assert index.params.n_lists == 1 and index.params.bits == 1
    scores, ids = index.search(rows, 12)
    np.testing.assert_array_equal(ids, stream_topk(rows, [(0, rows)], 12)[1])
    assert ids[:, 0].tolist() == list(range(12)) and np.allclose(scores[:, 0], 1, atol=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda i, q: i.search(q[:, :32], K), "the queries are 32-d, the index holds 64-d rows"),
        (lambda i, q: i.search(q, N + 1), f"k must be between 1 and the gallery size {N}, got {N + 1}"),
        (lambda i, q: i.search(q, 0), "k must be >= 1, got 0"),
        (lambda i, q: i.search(q, K, nprobe=0), "nprobe must be >= 1, got 0"),
        (lambda i, q: i.search(np.full((1, DIM), np.nan), K), "queries contain NaN or inf in 1 row"),
        (lambda i, q: i.search(q[0], K), "queries must be a 2-D array"),
    ],
)
def test_bad_queries_are_refused_clearly(built, queries, call, message):
    with pytest.raises(ValueError, match=message):
        call(built, queries)


def _corrupt_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: _corrupt_byte(f / "ivfpq.index"), "ivfpq.index: corrupt"),
        (lambda f: os.truncate(f / "ivfpq.ivfdata", 1000), "ivfpq.ivfdata: 1000 bytes, ivfpq.json says"),
        (lambda f: (f / "ivfpq.ivfdata").unlink(), "ivfpq.ivfdata: missing from the IVF-PQ index"),
        (lambda f: (f / "ivfpq.json").unlink(), "ivfpq.json: missing from the IVF-PQ index"),
        (lambda f: (f / "ivfpq.json").write_text("{"), "ivfpq.json is unreadable"),
        (lambda f: (f / "ivfpq.json").write_text('{"format": "other"}'), "not an xmodal-ivfpq/1 description"),
    ],
)
def test_damaged_files_are_refused_by_name(built, vectors, tmp_path, damage, message):
    folder = shutil.copytree(vectors.folder.parent / "index", tmp_path / "index")
    damage(folder)
    with pytest.raises(IvfPqError, match=message):
        IvfPqIndex.load(folder, vectors)


def test_other_vectors_and_a_damaged_shard_are_refused(built, vectors, tmp_path):
    other = write_shards(tmp_path / "other", [clustered(N, seed=9)])
    with pytest.raises(IvfPqError, match="does not hold the rows the IVF-PQ index in .* was built from"):
        IvfPqIndex.load(vectors.folder.parent / "index", other)
    copy = Shards(shutil.copytree(vectors.folder, tmp_path / "copy"))
    index = IvfPqIndex.load(vectors.folder.parent / "index", copy)
    index.verify(vectors.folder.parent / "index")  # whole
    _corrupt_byte(copy.folder / "000001.npy")
    with pytest.raises(ShardError, match="000001.npy is corrupt"):
        index.verify(vectors.folder.parent / "index")


def test_writing_the_lists_prints_nothing(tmp_path, capfd):
    rows = clustered(2000, seed=13)
    index = IvfPqIndex.from_rows(rows)
    (tmp_path / "index").mkdir()
    index.write(tmp_path / "index", write_shards(tmp_path / "vectors", [rows]))
    ctypes.CDLL(None).fflush(None)  # what FAISS printed (C stdio) reaches the captured descriptor
    assert capfd.readouterr().out == ""  # FAISS prints the list file's size; a --json command must not
    assert len(IvfPqIndex.load(tmp_path / "index", Shards(tmp_path / "vectors"))) == 2000


# -- adding rows -----------------------------------------------------------------------


def test_adding_keeps_the_quantizers_until_the_collection_doubles():
    rows = clustered(7000, seed=8)
    index = IvfPqIndex.from_rows(rows[:3000])
    trained = index._trained
    same = index.add(rows[3000:4000])
    assert same is index and np.array_equal(index._trained, trained) and index.trained_for == 3000
    assert len(index) == 4000 and len(index._parts) == 1  # the new codes join the in-memory part
    scores, ids = index.search(rows[3990:4000], 1)
    assert ids[:, 0].tolist() == list(range(3990, 4000)) and np.allclose(scores, 1, atol=1e-6)
    grown = index.add(rows[4000:])  # 7,000 rows > 2 x 3,000: trained again on all of them
    assert grown is not index and grown.trained_for == 7000 and len(grown) == 7000
    assert (index.params.n_lists, grown.params.n_lists) == (64, 128)
    np.testing.assert_array_equal(grown.search(rows[6990:], 1)[1][:, 0], np.arange(6990, 7000))
    with pytest.raises(ValueError, match="the rows are 32-d, the index holds 64-d rows"):
        grown.add(rows[:5, :32])


def test_row_source_takes_across_shards_and_memory(vectors):
    source = RowSource(DIM, vectors)
    extra = clustered(10, seed=10)
    source.append(extra)
    ids = np.array([N + 3, 5, 95_000, 30_000, N + 9, 29_999, 5])
    expected = np.concatenate([vectors.to_array(), extra])[ids]
    np.testing.assert_array_equal(source.take(ids), expected)
    with pytest.raises(ValueError, match=f"row ids must be in 0..{N + 9}"):
        source.take(np.array([N + 10]))


# -- the index kind ---------------------------------------------------------------------


def _model() -> Model:
    """A model whose encoders are never built: a 16-d CCA of random text and image rows."""
    rng = np.random.default_rng(0)
    aligner = CCAAligner(n_components=16).fit({"text": rng.normal(size=(200, 24)), "image": rng.normal(size=(200, 20))})
    return Model(aligner, {"text": EncoderRecord("minilm", None, 24), "image": EncoderRecord("lite0", None, 20)})


def _items(start: int, stop: int) -> list[IndexItem]:
    return [IndexItem(f"t{i}", None, (f"text {i}",)) for i in range(start, stop)]


def test_an_ivfpq_storage_is_saved_as_shards_and_lists_then_grows(tmp_path):
    rows = clustered(5000, seed=11, dim=16)
    storage = IndexStorage(_model(), "text", "ivfpq")
    storage.append(_items(0, 4000), rows[:4000], None)
    path = storage.save(tmp_path / "index")
    first = current_generation(path)
    assert sorted(p.name for p in first.iterdir()) == [
        "items.parquet", "ivfpq.index", "ivfpq.ivfdata", "ivfpq.json", "manifest.json", "model.npz", "vectors",
    ]  # fmt: skip
    manifest = json.loads((first / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["items.parquet", "ivfpq.index", "ivfpq.json", "model.npz"]
    assert manifest["faiss_index"] == "ivfpq" and manifest["ivfpq"]["trained_for"] == 4000

    loaded = IndexStorage.load(path)
    assert isinstance(loaded.take(np.array([0])), np.ndarray) and loaded.dim == 16 and not loaded.exact
    for a, b in zip(loaded.knn(rows[:50], K), storage.knn(rows[:50], K)):
        np.testing.assert_array_equal(a, b)
    loaded.append(_items(4000, 5000), rows[4000:], None)  # 5,000 <= 2 x 4,000: the trained quantizers
    assert loaded._ivfpq is not None and loaded._ivfpq.trained_for == 4000
    loaded.save(path)
    second = current_generation(path)
    assert sorted(p.name for p in (second / "vectors").iterdir()) == ["000000.npy", "000001.npy", "shards.json"]
    linked = [os.stat(g / "vectors" / "000000.npy").st_ino for g in (first, second)]
    assert linked[0] == linked[1]  # the loaded rows are hard-linked, not copied
    grown = IndexStorage.load(path)
    assert len(grown) == 5000 and grown.items[-1].id == "t4999"
    np.testing.assert_array_equal(grown.knn(rows[4990:], 1)[1][:, 0], np.arange(4990, 5000))
    np.testing.assert_allclose(grown.embeddings, rows, atol=0)
    assert len(IndexStorage.load(path)) == 5000 and first.is_dir()  # the previous generation is kept whole


def test_a_save_copies_the_rows_where_hard_links_fail(tmp_path, monkeypatch):
    rows = clustered(600, seed=16, dim=16)
    storage = IndexStorage(_model(), "text", "ivfpq")
    storage.append(_items(0, 500), rows[:500], None)
    path = storage.save(tmp_path / "index")
    loaded = IndexStorage.load(path)
    loaded.append(_items(500, 600), rows[500:], None)
    shutil.rmtree(current_generation(path) / "vectors")  # the loaded files are gone; their maps are open

    def refuse(*args):
        raise OSError("no hard links here")

    monkeypatch.setattr(os, "link", refuse)
    loaded.save(path)
    grown = IndexStorage.load(path)
    np.testing.assert_array_equal(grown.embeddings, rows)
    np.testing.assert_array_equal(grown.knn(rows[590:], 1)[1][:, 0], np.arange(590, 600))


def test_a_damaged_ivfpq_generation_is_refused_by_name(tmp_path):
    rows = clustered(500, seed=12, dim=16)
    storage = IndexStorage(_model(), "text", "ivfpq")
    storage.append(_items(0, 500), rows, None)
    path = storage.save(tmp_path / "index")
    generation = current_generation(path)
    (generation / "ivfpq.ivfdata").unlink()
    with pytest.raises(ValueError, match="ivfpq.ivfdata: missing from the IVF-PQ index"):
        IndexStorage.load(path)
    os.truncate(generation / "vectors" / "000000.npy", 200)
    with pytest.raises(ValueError, match="a file of the index cannot be read .*000000.npy is truncated"):
        IndexStorage.load(path)


@pytest.mark.data
@pytest.mark.weights
def test_index_build_kind_ivfpq_end_to_end(small_model, gallery_items, cache_dir, models_dir, tmp_path, xmodal):
    """`xmodal index build --kind ivfpq`, `index add`, `search`: a tiny gallery is searched exactly."""

    def manifest(path, items):
        path.write_text(
            "".join(json.dumps({"id": i.id, "image": i.path, "texts": list(i.captions)}) + "\n" for i in items)
        )
        return path

    items = gallery_items[:12]
    model = small_model.save(tmp_path / "cca.npz")
    out = tmp_path / "index"
    common = ["--cache", cache_dir, "--models", models_dir]
    built = xmodal("index", "build", manifest(tmp_path / "a.jsonl", items[:8]), "--model", model, "--out", out,
                   "--kind", "ivfpq", *common)  # fmt: skip
    assert built.exit_code == 0, built.output
    assert "indexed 8 image items (ivfpq)" in built.output
    added = xmodal("index", "add", out, manifest(tmp_path / "b.jsonl", items[8:]), *common)
    assert added.exit_code == 0 and "added 4 items -> 12" in added.output, added.output
    assert (current_generation(out) / "vectors" / "000001.npy").is_file()  # the 4 rows: a new shard
    found = xmodal("search", out, "--image", items[10].path, "-k", "12", "--json", "--models", models_dir)
    assert found.exit_code == 0, found.output
    results = json.loads(found.stdout)["results"]
    assert results[0]["id"] == items[10].id and {r["id"] for r in results} == {i.id for i in items}
    flat = xmodal("index", "build", manifest(tmp_path / "all.jsonl", items), "--model", model, "--out",
                  tmp_path / "flat", *common)  # fmt: skip
    assert flat.exit_code == 0, flat.output
    exact = json.loads(xmodal("search", tmp_path / "flat", "--image", items[10].path, "-k", "12", "--json",
                              "--models", models_dir).stdout)["results"]  # fmt: skip
    assert [r["id"] for r in results] == [r["id"] for r in exact]
    assert [r["score"] for r in results] == pytest.approx([r["score"] for r in exact], abs=1e-5)
