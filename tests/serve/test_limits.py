"""Hostile requests against a real uvicorn on loopback: decompression bombs, unbounded chunked
uploads, foreign Host headers, long query strings, missing tokens, files that are not files."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from xmodal.search import IndexItem
from xmodal.serve import create_app
from xmodal.serve.app import MAX_PIXELS, MAX_UPLOAD_BYTES

pytestmark = [pytest.mark.data, pytest.mark.weights]


@pytest.fixture(scope="module")
def url(small_index, serving) -> Iterator[str]:
    with serving(create_app(small_index)) as address:
        yield address


@pytest.fixture(scope="module")
def guarded(small_index, serving) -> Iterator[str]:
    with serving(create_app(small_index, token="s3cret")) as address:
        yield address


def _bomb() -> bytes:
    """A 13000 x 13000 PNG of a few kilobytes: 169 million pixels behind a tiny file."""
    buffer = io.BytesIO()
    Image.new("1", (13000, 13000)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_decompression_bomb_is_refused_from_its_header(url):
    bomb = _bomb()
    assert len(bomb) < 100_000 and MAX_PIXELS < 13000 * 13000
    started = time.perf_counter()
    answer = httpx.post(f"{url}/search/image", files={"image": ("bomb.png", bomb, "image/png")}, timeout=60)
    assert answer.status_code == 413 and "13000 x 13000 pixels, over the limit" in answer.json()["detail"]
    assert "upload 'bomb.png'" in answer.json()["detail"]  # never the temporary file's path
    assert time.perf_counter() - started < 5  # refused before decoding
    assert httpx.get(f"{url}/search", params={"q": "a dog"}).status_code == 200


def test_a_chunked_upload_without_length_is_bounded(url):
    sent = 0

    def body() -> Iterator[bytes]:  # a well-formed multipart upload that never ends soon
        nonlocal sent
        yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
        block = b"\0" * 2**20
        for _ in range(MAX_UPLOAD_BYTES // 2**20 + 20):
            sent += len(block)
            yield block

    answer = httpx.post(
        f"{url}/search/image", content=body(), headers={"content-type": "multipart/form-data; boundary=x"}, timeout=60
    )
    assert answer.status_code == 413 and "request body is over 10 MB (reading stopped)" in answer.json()["detail"]
    assert sent > MAX_UPLOAD_BYTES  # no Content-Length told the server: it counted as the body came in
    assert httpx.get(f"{url}/health").status_code == 200


def test_foreign_hosts_and_long_queries_are_refused(url):
    rebound = httpx.get(f"{url}/search", params={"q": "a dog"}, headers={"host": "evil.example"})
    assert rebound.status_code == 400 and rebound.json()["detail"] == "Host header 'evil.example' is not served here"
    control = httpx.get(f"{url}/search", params={"q": "a\x00dog"})
    assert control.status_code == 400 and "control characters" in control.json()["detail"]
    for host in ("localhost", "127.0.0.1"):
        assert httpx.get(f"{url}/health", headers={"host": host}).status_code == 200
    long = httpx.get(f"{url}/search", params={"q": "dog " * 3000})
    assert long.status_code == 414 and "query string is over" in long.json()["detail"]


def test_the_token_guards_the_api_but_not_the_page(guarded):
    assert httpx.get(f"{guarded}/search", params={"q": "a dog"}).status_code == 401
    wrong = httpx.get(f"{guarded}/search", params={"q": "a dog"}, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = httpx.get(f"{guarded}/search", params={"q": "a dog"}, headers={"authorization": "Bearer s3cret"})
    assert right.status_code == 200 and right.json()["results"]
    assert httpx.get(f"{guarded}/health").status_code == 200 and httpx.get(f"{guarded}/").status_code == 200


def test_a_fifo_in_the_items_is_refused_not_waited_on(small_index, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    storage = small_index.storage
    original = storage.items[0]
    storage.items[0] = IndexItem(original.id, str(fifo), original.captions)
    try:
        client = TestClient(create_app(small_index), base_url="http://localhost")
        answer = client.get(f"/thumbnails/{original.id}")
        assert answer.status_code == 404 and "not a regular file" in answer.json()["detail"]
    finally:
        storage.items[0] = original
