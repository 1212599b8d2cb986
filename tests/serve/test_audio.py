"""Audio in the service, on real speech: a gallery of Tux Paint's spoken French descriptions,
searched by uploaded clips (``POST /search/audio``), played back from ``GET /media/{id}``,
and the page that uploads a recording and plays the results (Playwright on Chromium)."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

from xmodal.search import IndexItem, Searcher
from xmodal.serve import create_app
from xmodal.serve.app import MAX_AUDIO_SECONDS, MAX_UPLOAD_BYTES

pytestmark = [pytest.mark.data, pytest.mark.weights]
N_TRAIN, N_GALLERY = 40, 12


@pytest.fixture(scope="module")
def index(tuxpaint, models_dir, cache_dir, tmp_path_factory) -> Searcher:
    """CCA fitted on 40 (English description, French recording) pairs; an index of the next 12
    French recordings, with their English descriptions as captions."""
    from xmodal.align import CCAAligner
    from xmodal.data import load_dataset
    from xmodal.data.tuxpaint import stamp_items, stamps_folder
    from xmodal.model import fit_model
    from xmodal.search import items_from_dataset
    from xmodal.store import EmbeddingStore

    stamps = [i for i in stamp_items(stamps_folder(tuxpaint), ("en", "fr")) if "audio.fr" in i]
    lines = [
        {"id": i["id"], "text.en": i["text.en"], "audio.fr": i["audio.fr"], "split": "train" if n < N_TRAIN else "test"}
        for n, i in enumerate(stamps[: N_TRAIN + N_GALLERY])
    ]
    manifest = tmp_path_factory.mktemp("speech") / "speech.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    dataset, store = load_dataset(str(manifest)), EmbeddingStore(cache_dir)
    encoders = {"text.en": "minilm", "audio.fr": "whisper-base"}
    model = fit_model(
        dataset, CCAAligner(n_components=16, reg=1.0), store, encoders=encoders, models_dir=models_dir, progress=False
    )
    gallery = items_from_dataset(dataset.split("test"), "audio.fr", "text.en")
    built = Searcher.build(gallery, model, modality="audio.fr", captions="text.en", store=store, models_dir=models_dir)
    assert len(built) == N_GALLERY and built.storage.gallery_kind == "audio"
    return built


@pytest.fixture(scope="module")
def client(index) -> Iterator[TestClient]:
    with TestClient(create_app(index), base_url="http://localhost") as client:
        yield client


def _clip(index: Searcher, row: int = 0) -> bytes:
    return Path(index.items[row].path or "").read_bytes()


def _as(index: Searcher, audio_format: str, row: int = 0) -> bytes:
    """A gallery clip re-encoded in ``audio_format`` (soundfile: WAV, FLAC, MP3, AIFF)."""
    samples, rate = soundfile.read(index.items[row].path, dtype="float32")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=audio_format)
    return buffer.getvalue()


def _wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV")
    return buffer.getvalue()


def _long(index: Searcher) -> bytes:
    """Real speech, one clip repeated to just over the limit, as 16-bit mono WAV."""
    samples, rate = soundfile.read(index.items[0].path, dtype="float32")
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    return _wav(np.resize(mono, int((MAX_AUDIO_SECONDS + 1) * rate)), rate)


def test_the_schema_documents_the_audio_routes(client):
    schema = client.get("/openapi.json").json()
    audio, media = schema["paths"]["/search/audio"]["post"], schema["paths"]["/media/{item_id}"]["get"]
    assert {"400", "401", "413", "414", "422"} <= set(audio["responses"])
    assert "30 s" in audio["responses"]["413"]["description"] and "30 s" in audio["description"]
    form = audio["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    body = schema["components"]["schemas"][form.rsplit("/", 1)[1]]
    assert body["required"] == ["audio"] and "30 s" in body["properties"]["audio"]["description"]
    modality = next(p for p in audio["parameters"] if p["name"] == "modality")
    assert modality["schema"]["enum"] == ["audio.fr"]
    assert {"audio/ogg", "audio/wav", "audio/flac", "audio/mpeg"} <= set(media["responses"]["200"]["content"])
    assert {"400", "401", "404", "414"} <= set(media["responses"])
    assert "media" in schema["components"]["schemas"]["Result"]["properties"]


def test_a_gallery_clip_finds_its_own_item_first(client, index):
    for row in (0, 5, N_GALLERY - 1):
        item = index.items[row]
        answer = client.post("/search/audio", params={"k": 5}, files={"audio": ("clip.ogg", _clip(index, row))})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["query"] == "clip.ogg" and body["k"] == 5 and len(body["results"]) == 5
        first = body["results"][0]
        assert first["id"] == item.id and first["score"] == pytest.approx(1.0, abs=1e-4)
        assert first["captions"] == list(item.captions) and (item.path or "").endswith("/" + first["path"])
        assert not first["path"].startswith("/")  # relative to the gallery's folder: no server layout disclosed
        assert [r["id"] for r in body["results"]] == [h.id for h in index.search(audio=item.path, k=5)]
        for result in body["results"]:
            assert result["media"] == f"/media/{quote(result['id'], safe='')}" and result["thumbnail"] is None


def test_the_modality_can_be_named_and_the_image_route_still_takes_audio(client, index):
    upload = {"audio": ("clip.ogg", _clip(index, 3))}
    default = client.post("/search/audio", params={"k": 4}, files=upload).json()
    named = client.post("/search/audio", params={"k": 4, "modality": "audio.fr"}, files=upload).json()
    shared = client.post("/search/image", params={"k": 4, "modality": "audio.fr"}, files={"image": upload["audio"]})
    assert default == named == shared.json() and default["results"][0]["id"] == index.items[3].id


@pytest.mark.parametrize("audio_format", ["WAV", "FLAC", "MP3"])
def test_every_taken_format_is_searched(client, index, audio_format):
    name = f"clip.{audio_format.lower()}"
    answer = client.post("/search/audio", params={"k": 3}, files={"audio": (name, _as(index, audio_format, row=2))})
    assert answer.status_code == 200, answer.text
    assert index.items[2].id in [r["id"] for r in answer.json()["results"]]  # the same speech, decoded anew


def test_a_clip_over_the_limit_is_refused_from_its_header(client, index, monkeypatch):
    def no_decoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the clip was decoded")

    clip = _long(index)
    monkeypatch.setattr(soundfile, "read", no_decoding)
    answer = client.post("/search/audio", files={"audio": ("long.wav", clip)})
    assert answer.status_code == 413
    assert answer.json()["detail"] == (
        f"upload 'long.wav': {MAX_AUDIO_SECONDS + 1:.1f} s of audio, over the limit of {MAX_AUDIO_SECONDS:g} s"
    )


def test_media_serves_the_exact_file_for_playback(client, index):
    item = index.items[4]
    answer = client.get(f"/media/{quote(item.id, safe='')}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/ogg"
    assert answer.content == Path(item.path or "").read_bytes()
    assert client.get(f"/media/{item.id}").content == answer.content  # slashes need no escaping
    part = client.get(f"/media/{item.id}", headers={"range": "bytes=0-99"})  # players seek by ranges
    assert part.status_code == 206 and part.content == answer.content[:100]


def test_media_types_follow_the_format(index, cache_dir, tmp_path):
    """A gallery of WAV, FLAC and MP3 copies of one clip: each served with its own type."""
    from xmodal.search.storage import IndexStorage
    from xmodal.store import EmbeddingStore

    types = {"WAV": "audio/wav", "FLAC": "audio/flac", "MP3": "audio/mpeg"}
    items = []
    for audio_format in types:
        copy = tmp_path / f"clip.{audio_format.lower()}"
        copy.write_bytes(_as(index, audio_format))
        items.append(IndexItem(audio_format, str(copy)))
    storage = IndexStorage(index.model, "audio.fr", gallery_kind="audio", caption_modality="text.en")
    copies = Searcher(storage, index.encoders).add(items, store=EmbeddingStore(cache_dir))
    client = TestClient(create_app(copies), base_url="http://localhost")
    for item in items:
        answer = client.get(f"/media/{item.id}")
        assert answer.status_code == 200 and answer.headers["content-type"] == types[item.id]
        assert answer.content == Path(item.path or "").read_bytes()


def test_a_fifo_in_the_gallery_is_refused_not_waited_on(index, tmp_path):
    fifo = tmp_path / "pipe.ogg"
    os.mkfifo(fifo)
    storage = index.storage
    original = storage.items[0]
    storage.items[0] = IndexItem(original.id, str(fifo), original.captions)
    try:
        answer = TestClient(create_app(index), base_url="http://localhost").get(f"/media/{original.id}")
        assert answer.status_code == 404 and "is not a regular file" in answer.json()["detail"]
        assert str(tmp_path) not in answer.json()["detail"]  # the server's layout is not disclosed
    finally:
        storage.items[0] = original


BAD_REQUESTS: dict[str, tuple[Callable[[TestClient, Searcher], Any], int, str]] = {
    "empty upload": (
        lambda c, i: c.post("/search/audio", files={"audio": ("empty.ogg", b"")}),
        400,
        "upload 'empty.ogg' is empty",
    ),
    "not audio": (
        lambda c, i: c.post("/search/audio", files={"audio": ("notes.txt", b"hello, not a recording")}),
        400,
        "cannot read audio upload 'notes.txt': format not recognised; send a WAV, OGG, FLAC or MP3 clip",
    ),
    "corrupt audio": (
        lambda c, i: c.post("/search/audio", files={"audio": ("bad.ogg", _clip(i)[:200])}),
        400,
        "cannot read audio upload 'bad.ogg': supported file format but file is malformed",
    ),
    "no samples": (
        lambda c, i: c.post("/search/audio", files={"audio": ("none.wav", _wav(np.zeros(0, np.float32)))}),
        400,
        "upload 'none.wav': no audio samples (an empty or truncated clip)",
    ),
    "a format not taken": (
        lambda c, i: c.post("/search/audio", files={"audio": ("clip.aiff", _as(i, "AIFF"))}),
        400,
        "cannot read audio upload 'clip.aiff': AIFF (Apple/SGI) is not taken; send a WAV, OGG, FLAC or MP3 clip",
    ),
    "silent audio": (
        lambda c, i: c.post("/search/audio", files={"audio": ("silent.wav", _wav(np.zeros(32_000, np.float32)))}),
        400,
        "upload 'silent.wav': the audio is silent",
    ),
    "too long": (
        lambda c, i: c.post("/search/audio", files={"audio": ("long.wav", _long(i))}),
        413,
        f"over the limit of {MAX_AUDIO_SECONDS:g} s",
    ),
    "too large": (
        lambda c, i: c.post("/search/audio", files={"audio": ("big.wav", b"\0" * (MAX_UPLOAD_BYTES + 1))}),
        413,
        "the upload is over 10 MB",
    ),
    "unknown modality": (
        lambda c, i: c.post("/search/audio", params={"modality": "audio.de"}, files={"audio": ("a.ogg", _clip(i))}),
        400,
        "the model has no modality 'audio.de'; it has text.en, audio.fr",
    ),
    "a text modality": (
        lambda c, i: c.post("/search/audio", params={"modality": "text.en"}, files={"audio": ("a.ogg", _clip(i))}),
        400,
        "'text.en' takes text queries: send them to /search",
    ),
    "no file": (lambda c, i: c.post("/search/audio"), 422, "audio: Field required"),
    "k over the gallery": (
        lambda c, i: c.post("/search/audio", params={"k": 99}, files={"audio": ("a.ogg", _clip(i))}),
        400,
        f"k must be between 1 and the gallery size {N_GALLERY}, got 99",
    ),
    "k = 0": (
        lambda c, i: c.post("/search/audio", params={"k": 0}, files={"audio": ("a.ogg", _clip(i))}),
        400,
        "k must be >= 1, got 0",
    ),
    "no image modality": (
        lambda c, i: c.post("/search/image", files={"image": ("a.jpg", b"\xff\xd8\xff")}),
        400,
        "the model has no image modality; it has text.en, audio.fr",
    ),
    "unknown media": (lambda c, i: c.get("/media/nope"), 404, "unknown item id 'nope'"),
    "media path traversal": (
        lambda c, i: c.get("/media/..%2F..%2F..%2Fetc%2Fpasswd"),
        400,
        "invalid item id '../../../etc/passwd'",
    ),
    "media absolute path": (lambda c, i: c.get("/media/%2Fetc%2Fpasswd"), 400, "invalid item id '/etc/passwd'"),
    "media traversal to a real clip": (
        lambda c, i: c.get(f"/media/animals%2F..%2F{quote(i.items[0].id, safe='')}"),
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
    assert tempfile.gettempdir() not in response.json()["detail"]  # the upload is named, not the temporary file
    good = client.post("/search/audio", params={"k": 1}, files={"audio": ("a.ogg", _clip(index))})
    assert good.status_code == 200


def test_uploads_leave_no_temporary_file(client, index, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in ("k over the gallery", "not audio", "silent audio", "too long", "no samples"):
        BAD_REQUESTS[name][0](client, index)
    assert client.post("/search/audio", files={"audio": ("a.ogg", _clip(index))}).status_code == 200
    assert list(tmp_path.iterdir()) == []


def test_the_default_audio_modality_must_be_unambiguous(index):
    two = Searcher(index.storage, {**index.encoders, "audio.es": index.encoders["audio.fr"]})
    client = TestClient(create_app(two), base_url="http://localhost")
    upload = {"audio": ("a.ogg", _clip(index))}
    ambiguous = client.post("/search/audio", files=upload)
    assert ambiguous.status_code == 400
    assert (
        ambiguous.json()["detail"]
        == "the model has several audio modalities (audio.fr, audio.es): name one in modality"
    )
    named = client.post("/search/audio", params={"modality": "audio.fr"}, files=upload)
    assert named.status_code == 200 and named.json()["results"][0]["id"] == index.items[0].id


def test_an_image_index_has_no_audio(small_index, index):
    client = TestClient(create_app(small_index), base_url="http://localhost")
    upload = {"audio": ("a.ogg", _clip(index))}
    none = client.post("/search/audio", files=upload)
    assert none.status_code == 400 and none.json()["detail"] == "the model has no audio modality; it has text, image"
    image = client.post("/search/audio", params={"modality": "image"}, files=upload)
    assert (
        image.status_code == 400 and image.json()["detail"] == "'image' takes image files: send them to /search/image"
    )
    item = small_index.items[0]
    media = client.get(f"/media/{item.id}")
    assert (
        media.status_code == 404
        and media.json()["detail"] == f"item {item.id!r} has no audio (the gallery holds image)"
    )
    results = client.get("/search", params={"q": "a dog", "k": 3}).json()["results"]
    assert all(r["media"] is None and r["thumbnail"] for r in results)


@pytest.fixture(scope="module")
def url(index, serving) -> Iterator[str]:
    """The service on a free loopback port, in a thread of this process."""
    with serving(create_app(index)) as address:
        yield address


LOADED_DURATION = """async (selector) => {
  const audio = document.querySelector(selector);
  audio.preload = "metadata";
  audio.load();
  await new Promise((done, failed) => { audio.onloadedmetadata = done; audio.onerror = failed; });
  return audio.duration;
}"""


def test_the_page_uploads_a_recording_and_plays_the_results(browser, url, index):
    item = index.items[1]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.wait_for_function("document.querySelector('#about').textContent.includes('audio.fr')")
    page.set_input_files("#audio", item.path or "")
    page.wait_for_selector(".result audio")
    assert page.locator(".result audio").count() == N_GALLERY  # the page's k (16), capped at the gallery size
    assert f"{N_GALLERY} results for audio {Path(item.path or '').name}" in page.text_content("#status")
    first = page.locator(".result audio").first
    assert first.get_attribute("src") == f"/media/{quote(item.id, safe='')}"
    assert first.get_attribute("preload") == "none" and first.evaluate("a => a.controls")
    assert page.locator(".result p").first.text_content() == item.captions[0]
    duration = page.evaluate(LOADED_DURATION, ".result audio")  # Chromium decodes what /media serves
    assert duration == pytest.approx(soundfile.info(item.path).duration, abs=0.05)

    page.locator(".result p").first.click()
    page.wait_for_selector("#details audio")
    assert page.locator("#captions li").all_text_contents() == list(item.captions)
    assert page.locator("#details audio").get_attribute("src") == f"/media/{quote(item.id, safe='')}"

    page.set_input_files("#audio", {"name": "notes.txt", "mimeType": "audio/ogg", "buffer": b"not a recording"})
    page.wait_for_selector("#status.error")
    assert "cannot read audio upload 'notes.txt'" in page.text_content("#status")
    page.close()
