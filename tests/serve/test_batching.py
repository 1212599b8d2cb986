"""Batched text search: ``Searcher.search_many`` and the service's :class:`TextBatcher` give
every query the hits it gets alone (real weights), a refused query fails alone, and
concurrent callers each get their own answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from xmodal.search import Hit
from xmodal.serve import create_app
from xmodal.serve.batching import Options, TextBatcher

pytestmark = [pytest.mark.data, pytest.mark.weights]


@pytest.fixture(scope="module")
def captions(small_index) -> list[str]:
    """Two captions of each gallery item: 48 distinct queries."""
    return [c for item in small_index.items for c in item.captions[:2]]


def same_hits(batched: list[Hit], alone: list[Hit]) -> bool:
    """The same items in the same order, with the same scores and probabilities to float tolerance."""
    return [(h.rank, h.id) for h in batched] == [(h.rank, h.id) for h in alone] and all(
        b.score == pytest.approx(a.score, abs=1e-5) and b.probability == pytest.approx(a.probability, abs=1e-5)
        for b, a in zip(batched, alone)
    )


@pytest.mark.parametrize(
    "options",
    [{"k": 5}, {"k": 24}, {"k": 3, "csls": True}, {"k": 4, "modality": "text"}],
    ids=["k=5", "whole gallery", "csls", "named modality"],
)
def test_search_many_gives_each_query_its_own_hits(small_index, captions, options):
    batched = small_index.search_many(captions, **options)
    alone = {key: value for key, value in options.items() if key != "modality"}
    assert len(batched) == len(captions)
    for caption, hits in zip(captions, batched):
        assert same_hits(hits, small_index.search(queries={"text": caption}, **alone))


def test_search_many_refuses_like_search(small_index):
    assert small_index.search_many([]) == []
    with pytest.raises(ValueError, match="the text query is empty"):
        small_index.search_many(["a dog", "  "])
    with pytest.raises(ValueError, match="k must be between 1 and the gallery size 24, got 25"):
        small_index.search_many(["a dog"], k=25)
    with pytest.raises(ValueError, match="the model has no modality 'text.fr'"):
        small_index.search_many(["a dog"], modality="text.fr")


@pytest.fixture
def held(small_index, monkeypatch) -> tuple[threading.Event, threading.Event, list[int]]:
    """Hold the batcher's first ``search_many`` until ``release`` is set (so what is submitted
    meanwhile forms one batch): ``(entered, release, sizes of the batches searched)``."""
    entered, release, sizes = threading.Event(), threading.Event(), []
    search_many = small_index.search_many

    def holding(values: list[str], **options: Any) -> list[list[Hit]]:
        sizes.append(len(values))
        entered.set()
        assert release.wait(timeout=30)
        return search_many(values, **options)

    monkeypatch.setattr(small_index, "search_many", holding)
    return entered, release, sizes


def test_one_batch_answers_mixed_options_and_a_refused_query_fails_alone(small_index, captions, held):
    entered, release, sizes = held
    batcher = TextBatcher(small_index)
    first = batcher.submit(captions[0], Options())
    assert entered.wait(timeout=30)
    queries = [
        (captions[1], Options(k=3)),
        ("   ", Options(k=3)),  # refused, in the same group as others
        (captions[2], Options(k=3)),
        (captions[3], Options(k=5, csls=True)),
        (captions[4], Options(k=99)),  # a group that is refused as a whole
        (captions[5], Options()),
    ]
    futures = [batcher.submit(text, options) for text, options in queries]
    release.set()
    assert same_hits(first.result(timeout=60), small_index.search(captions[0]))
    for (text, options), future in zip(queries, futures):
        if not text.strip():
            with pytest.raises(ValueError, match="the text query is empty"):
                future.result(timeout=60)
        elif options.k > len(small_index):
            with pytest.raises(ValueError, match="k must be between 1 and the gallery size"):
                future.result(timeout=60)
        else:
            assert same_hits(future.result(timeout=60), small_index.search(text, k=options.k, csls=options.csls))
    assert sizes[0] == 1 and sizes[1] == 3  # the first alone; then the k=3 group together, before its retries
    batcher.close()


def test_close_answers_what_is_queued_and_a_later_request_starts_again(small_index, captions):
    batcher = TextBatcher(small_index)
    futures = [batcher.submit(c, Options(k=2)) for c in captions[:8]]
    batcher.close()
    assert all(f.done() for f in futures)
    assert same_hits(batcher.submit(captions[9], Options(k=2)).result(timeout=60), small_index.search(captions[9], k=2))
    batcher.close()


def test_concurrent_requests_get_their_own_results_as_without_batching(small_index, captions):
    queries = [*captions[:16], " ", "a dog\x00"]  # 16 good queries, an empty one, a control character
    with (
        TestClient(create_app(small_index), base_url="http://localhost") as batched,
        TestClient(create_app(small_index, batch=False), base_url="http://localhost") as alone,
    ):

        def both(q: str) -> tuple[Any, Any]:
            params = {"q": q, "k": 5}
            return batched.get("/search", params=params), alone.get("/search", params=params)

        with ThreadPoolExecutor(len(queries)) as pool:
            answers = list(pool.map(both, queries))
    for q, (with_batching, without) in zip(queries, answers):
        assert with_batching.status_code == without.status_code
        if with_batching.status_code != 200:
            assert with_batching.status_code == 400 and with_batching.json() == without.json()
            continue
        body, expected = with_batching.json(), without.json()
        assert body["query"] == q and body["k"] == 5
        assert [r["id"] for r in body["results"]] == [r["id"] for r in expected["results"]]
        assert [r["score"] for r in body["results"]] == pytest.approx(
            [r["score"] for r in expected["results"]], abs=1e-5
        )


def test_the_text_route_takes_only_text_modalities(small_index):
    path = small_index.items[0].path  # a server file: never opened by a text query
    with TestClient(create_app(small_index), base_url="http://localhost") as client:
        refused = client.get("/search", params={"q": path, "modality": "image"})
    assert refused.status_code == 400
    assert refused.json() == {"detail": "'image' takes image files: send them to /search/image"}
