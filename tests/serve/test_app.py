"""The HTTP service through FastAPI's TestClient: every route and every bad request."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from xmodal.serve import create_app
from xmodal.serve.app import MAX_UPLOAD_BYTES

pytestmark = [pytest.mark.data, pytest.mark.weights]
N_GALLERY = 24  # conftest's small_index


@pytest.fixture(scope="module")
def index(small_index):
    assert len(small_index) == N_GALLERY
    return small_index


@pytest.fixture(scope="module")
def client(index):
    with TestClient(create_app(index), base_url="http://localhost") as client:
        yield client


def test_health(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["items"] == N_GALLERY and body["modality"] == "image"
    assert body["encoders"] == {"text": "minilm", "image": "efficientnet-lite0"} and body["aligner"] == "CCAAligner"


def test_the_page_and_its_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="q"' in page.text and "/static/app.js" in page.text
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200


def test_openapi_docs(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/search", "/search/image", "/items/{item_id}", "/thumbnails/{item_id}", "/health"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_text_search(client, index):
    body = client.get("/search", params={"q": "two dogs play in the snow", "k": 5}).json()
    assert body["query"] == "two dogs play in the snow" and body["k"] == 5
    hits = index.search("two dogs play in the snow", k=5)
    assert [r["id"] for r in body["results"]] == [h.id for h in hits]
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
    first = body["results"][0]
    assert first["thumbnail"] == f"/thumbnails/{first['id']}" and len(first["captions"]) == 5


def test_text_search_with_csls(client, index):
    body = client.get("/search", params={"q": "a child in a pool", "k": 3, "csls": "true"}).json()
    assert [r["id"] for r in body["results"]] == [h.id for h in index.search("a child in a pool", k=3, csls=True)]


def test_image_search_by_upload(client, index):
    item = index.items[5]
    upload = {"image": ("photo.jpg", Path(item.path).read_bytes(), "image/jpeg")}
    body = client.post("/search/image", params={"k": 3}, files=upload).json()
    assert body["query"] == "photo.jpg" and body["results"][0]["id"] == item.id
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_item_and_thumbnail(client, index):
    item = index.items[2]
    body = client.get(f"/items/{item.id}").json()
    assert body == {
        "id": item.id,
        "path": Path(item.path).name,  # relative to the gallery's folder: no server layout disclosed
        "captions": list(item.captions),
        "thumbnail": f"/thumbnails/{item.id}",
    }
    thumb = client.get(body["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 256


def _jpeg(index) -> bytes:
    return Path(index.items[0].path).read_bytes()


BAD_REQUESTS = {
    "empty query": (lambda c, i: c.get("/search", params={"q": ""}), 400, "the text query is empty"),
    "whitespace query": (lambda c, i: c.get("/search", params={"q": "  \t "}), 400, "the text query is empty"),
    "no query": (lambda c, i: c.get("/search"), 422, "q: Field required"),
    "k = 0": (lambda c, i: c.get("/search", params={"q": "a dog", "k": 0}), 400, "k must be >= 1, got 0"),
    "k < 0": (lambda c, i: c.get("/search", params={"q": "a dog", "k": -3}), 400, "k must be >= 1, got -3"),
    "k over the gallery": (
        lambda c, i: c.get("/search", params={"q": "a dog", "k": N_GALLERY + 1}),
        400,
        f"k must be between 1 and the gallery size {N_GALLERY}, got {N_GALLERY + 1}",
    ),
    "k not a number": (
        lambda c, i: c.get("/search", params={"q": "a dog", "k": "ten"}),
        422,
        "k: Input should be a valid integer",
    ),
    "image k over the gallery": (
        lambda c, i: c.post("/search/image", params={"k": 99}, files={"image": ("a.jpg", _jpeg(i))}),
        400,
        f"gallery size {N_GALLERY}, got 99",
    ),
    "not an image": (
        lambda c, i: c.post("/search/image", files={"image": ("notes.txt", b"hello, not an image")}),
        400,
        "cannot read image upload 'notes.txt': not a recognised image format",
    ),
    "truncated image": (
        lambda c, i: c.post("/search/image", files={"image": ("half.jpg", _jpeg(i)[: len(_jpeg(i)) // 2])}),
        400,
        "cannot read image upload 'half.jpg': image file is truncated",
    ),
    "no file": (lambda c, i: c.post("/search/image"), 422, "image: Field required"),
    "upload over 10 MB": (
        lambda c, i: c.post("/search/image", files={"image": ("big.jpg", b"\xff" * (MAX_UPLOAD_BYTES + 2**20))}),
        413,
        "the upload is over 10 MB",
    ),
    "upload just over 10 MB": (
        lambda c, i: c.post("/search/image", files={"image": ("big.jpg", b"\xff" * (MAX_UPLOAD_BYTES + 1))}),
        413,
        "the upload is over 10 MB",
    ),
    "unknown item": (lambda c, i: c.get("/items/nope.jpg"), 404, "unknown item id 'nope.jpg'"),
    "unknown thumbnail": (lambda c, i: c.get("/thumbnails/nope.jpg"), 404, "unknown item id 'nope.jpg'"),
    "path traversal": (
        lambda c, i: c.get("/thumbnails/..%2F..%2F..%2Fetc%2Fpasswd"),
        400,
        "invalid item id '../../../etc/passwd'",
    ),
    "absolute path": (lambda c, i: c.get("/thumbnails/%2Fetc%2Fpasswd"), 400, "invalid item id '/etc/passwd'"),
    "traversal to a real image": (
        lambda c, i: c.get(f"/thumbnails/..%2FImages%2F{i.items[0].id}"),
        400,
        "invalid item id",
    ),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_requests_get_a_4xx_json_message_and_the_server_keeps_serving(client, index, name):
    request, status, message = BAD_REQUESTS[name]
    response = request(client, index)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["detail"]
    assert client.get("/search", params={"q": "a dog", "k": 1}).status_code == 200
