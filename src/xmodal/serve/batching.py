"""Continuous batching of text searches: concurrent requests share one encoder call.

Requests join a queue; one worker thread takes everything waiting (up to ``max_batch``),
groups it by search options and answers each group with one
:meth:`~xmodal.search.Searcher.search_many`: one batch through the text encoder, one search
of the gallery. Requests that arrive while a batch runs form the next one, so a lone request
waits for nothing and a crowd is served in batches as large as the crowd. A query the index
refuses fails alone: its group is answered query by query.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass

from xmodal.search import Hit, Searcher

MAX_BATCH = 64  # the text encoder's batch size


@dataclass(frozen=True)
class Options:
    """What requests must share to be searched together (keywords of ``search_many``)."""

    modality: str | None = None
    k: int = 10
    csls: bool = False
    min_probability: float | None = None


@dataclass(frozen=True)
class _Request:
    text: str
    options: Options
    answer: Future[list[Hit]]


class TextBatcher:
    """Answers text searches of ``index`` in batches, from a worker thread started on the
    first request and stopped by :meth:`close`."""

    def __init__(self, index: Searcher, max_batch: int = MAX_BATCH):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.index, self.max_batch = index, max_batch
        self._queue: queue.SimpleQueue[_Request | None] | None = None  # the running worker's; None ends it
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    async def search(self, text: str, options: Options) -> list[Hit]:
        """The hits of ``text``, as ``index.search_many([text], **options)`` would give them."""
        return await asyncio.wrap_future(self.submit(text, options))

    def submit(self, text: str, options: Options) -> Future[list[Hit]]:
        """Queue a search; its future holds the hits, or the ``ValueError`` refusing it."""
        request = _Request(text, options, Future())
        with self._lock:
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                self._worker = threading.Thread(
                    target=self._run, args=(self._queue,), name="xmodal-batcher", daemon=True
                )
                self._worker.start()
            self._queue.put(request)
        return request.answer

    def close(self) -> None:
        """Stop the worker once it has answered the requests queued so far (a later request
        starts another)."""
        with self._lock:
            requests, worker, self._queue, self._worker = self._queue, self._worker, None, None
            if requests is not None:
                requests.put(None)
        if worker is not None:
            worker.join()

    def _run(self, requests: queue.SimpleQueue[_Request | None]) -> None:
        """Answer batches of everything waiting in ``requests`` until its ``None``."""
        while True:
            batch = [requests.get()]
            while batch[-1] is not None and len(batch) < self.max_batch:
                try:
                    batch.append(requests.get_nowait())
                except queue.Empty:
                    break
            self._answer([r for r in batch if r is not None and r.answer.set_running_or_notify_cancel()])
            if batch[-1] is None:
                return

    def _answer(self, batch: list[_Request]) -> None:
        """Answer ``batch``, one :func:`_search` per group of requests with the same options."""
        groups: dict[Options, list[_Request]] = {}
        for request in batch:
            groups.setdefault(request.options, []).append(request)
        for options, requests in groups.items():
            outcomes: Sequence[list[Hit] | Exception]
            try:
                outcomes = _search(self.index, [r.text for r in requests], options)
            except Exception as error:  # not a refusal (e.g. the encoder failed): the group's answer (a 500)
                outcomes = [error] * len(requests)
            for request, outcome in zip(requests, outcomes):
                if isinstance(outcome, Exception):
                    request.answer.set_exception(outcome)
                else:
                    request.answer.set_result(outcome)


def _search(index: Searcher, texts: Sequence[str], options: Options) -> Sequence[list[Hit] | ValueError]:
    """The hits of each of ``texts``, or the ``ValueError`` refusing it: one batch, or query by
    query when the batch is refused."""
    try:
        return index.search_many(texts, **asdict(options))
    except ValueError as error:
        if len(texts) == 1:
            return [error]
        return [outcome for text in texts for outcome in _search(index, [text], options)]
