"""FastAPI app over one index (a :class:`~xmodal.search.Searcher`): text and file (image,
audio, vector) search in any modality of the index's model, item metadata, thumbnails of
image galleries, the clips of audio galleries, a static page.

Every error is JSON ``{"detail": "<message>"}`` with a 4xx status: 400 for a query the index
refuses (empty text, ``k`` out of range, an empty upload, one that is not a readable image or
WAV/OGG/FLAC/MP3 clip, a silent clip, a modality the route does not take), 401 without the
bearer token when one is set, 404 for an unknown item (or one without the file asked for),
413 for a body over :data:`MAX_UPLOAD_BYTES` (whatever its transfer encoding), an image over
:data:`MAX_PIXELS` or a clip over :data:`MAX_AUDIO_SECONDS` (both read from the file's header,
before decoding), 414 for a query string over :data:`MAX_QUERY_BYTES`,
422 for a malformed request, 400 for a Host header not in the allow-list (loopback names by
default: a page on another site cannot reach a loopback service through DNS rebinding).
Paths in responses are relative to the gallery's common folder: the server's layout is not
disclosed.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import soundfile
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParameter
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import xmodal
from xmodal.data import DataError
from xmodal.data.images import check_pixels, jpeg_thumbnail
from xmodal.encoders import Encoder
from xmodal.search import Hit, IndexItem, Searcher
from xmodal.serve.batching import Options, TextBatcher

MAX_UPLOAD_BYTES = 10 * 2**20
MAX_PIXELS = 40_000_000  # an uploaded image larger than this is refused from its header
MAX_AUDIO_SECONDS = 30.0  # an uploaded clip longer than this is refused from its header
MAX_QUERY_BYTES = 4096
AUDIO_TYPES = {"WAV": "audio/wav", "WAVEX": "audio/wav", "OGG": "audio/ogg", "FLAC": "audio/flac", "MP3": "audio/mpeg"}
OTHER_AUDIO_TYPE = "application/octet-stream"  # a gallery clip in another format libsndfile reads
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
THUMBNAIL_PIXELS = 256
STATIC = Path(__file__).parent / "static"

CSLS = Annotated[bool, Query(description="Score by CSLS against the gallery's captions (text queries).")]
MinProbability = Annotated[
    float | None,
    Query(
        ge=0.0,
        le=1.0,
        description="Keep only results at least this likely to be a true match (a calibrated model; none: no match).",
    ),
]


class ErrorResponse(BaseModel):
    detail: str


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of a route: every one a JSON ``{"detail": message}``."""
    meaning = {
        400: "a query the index refuses (e.g. an unreadable, empty or silent upload), or a Host header not served",
        401: "no bearer token, or a wrong one (when the service has one)",
        404: "an unknown item, or one without the file asked for",
        413: f"a body over 10 MB, an image over the pixel limit, or audio over {MAX_AUDIO_SECONDS:g} s",
        414: "a query string over 4 KB",
        422: "a malformed request: a missing or mistyped parameter",
    }
    return {status: {"model": ErrorResponse, "description": meaning[status]} for status in statuses}


class Result(BaseModel):
    rank: int
    score: float
    id: str
    path: str | None
    captions: list[str]
    probability: float | None  # P(true match), when the model is calibrated (xmodal calibrate)
    thumbnail: str | None  # URL of the thumbnail route, for image galleries
    media: str | None  # URL of the media route, for audio galleries


class SearchResponse(BaseModel):
    query: str
    k: int
    results: list[Result]


class ItemResponse(BaseModel):
    id: str
    path: str | None
    captions: list[str]
    thumbnail: str | None


class Health(BaseModel):
    status: str
    items: int
    modality: str
    encoders: dict[str, str]
    aligner: str
    calibrated: list[str]  # the routes whose results carry a probability ("text->image", ...)
    bridged: list[str]  # the routes whose queries go through the model's bridge (xmodal fit --bridge)
    version: str


class Guard:
    """ASGI middleware: a Host header outside ``allowed_hosts`` gets 400, a query string over
    ``max_query`` bytes 414, a body over ``max_body`` bytes 413, counted as it streams in (a
    chunked upload without Content-Length included); every answer a JSON ``{"detail": ...}``."""

    def __init__(self, app: ASGIApp, max_body: int, max_query: int, allowed_hosts: Sequence[str]):
        self.app, self.max_body, self.max_query = app, max_body, max_query
        self.allowed_hosts = {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if "*" not in self.allowed_hosts and _host_name(host) not in self.allowed_hosts:
            await _json(400, f"Host header {host!r} is not served here")(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_query:
            await _json(414, f"the query string is over {self.max_query} bytes")(scope, receive, send)
            return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            await _json(413, f"the upload is over {self.max_body // 2**20} MB")(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise HTTPException(413, f"the request body is over {self.max_body // 2**20} MB (reading stopped)")
            return message

        await self.app(scope, counted, send)


def _host_name(host: str) -> str:
    """A Host header without its port: ``localhost:8000`` -> ``localhost``, ``[::1]:80`` -> ``[::1]``."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _json(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def create_app(
    index: Searcher,
    *,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    token: str | None = None,
    batch: bool = True,
) -> FastAPI:
    """The service for ``index``: ``/search``, ``/search/image``, ``/search/audio``,
    ``/items/{id}``, ``/thumbnails/{id}``, ``/media/{id}``, ``/health``, the page at ``/`` and
    OpenAPI docs at ``/docs``.

    ``allowed_hosts`` are the Host header values served (``*`` for any); ``token``, when set,
    is the bearer token every API route requires (``Authorization: Bearer TOKEN``); ``batch``
    encodes and searches concurrent text queries together (:mod:`xmodal.serve.batching`:
    the same results, more of them per second), else one at a time."""
    batcher = TextBatcher(index) if batch else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if batcher is not None:
            await run_in_threadpool(batcher.close)

    app = FastAPI(
        title="xmodal search",
        version=xmodal.__version__,
        description=f"Cross-modal search over {len(index)} {index.modality} items.",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(
        Guard, max_body=MAX_UPLOAD_BYTES + 2**16, max_query=MAX_QUERY_BYTES, allowed_hosts=list(allowed_hosts)
    )
    root = _common_folder(index)

    if token is not None:

        @app.middleware("http")
        async def require_token(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            open_paths = request.url.path in ("/", "/health") or request.url.path.startswith("/static/")
            given = request.headers.get("authorization", "")
            if not open_paths and not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _json(401, "a bearer token is required (Authorization: Bearer TOKEN)")
            return await call_next(request)

    def shown(path: str | None) -> str | None:
        return None if path is None or root is None else os.path.relpath(path, root)

    def result(hit: Hit) -> Result:
        fields = {**hit.to_dict(), "path": shown(hit.path)}
        return Result(**fields, thumbnail=_thumbnail_url(index, hit.id), media=_media_url(index, hit.id))

    def k_parameter() -> Any:
        return Query(
            10,
            description="Number of results, 1 to the gallery size.",
            json_schema_extra={"minimum": 1, "maximum": len(index)},  # checked by the searcher (400)
        )

    def item_id_parameter() -> Any:
        longest = max((len(item.id) for item in index.items), default=0)
        return PathParameter(
            description=f"An item's id, as in the results (at most {longest} characters: the index's longest).",
            json_schema_extra={"maxLength": longest},  # a longer one is unknown (404)
        )

    def modality_parameter(kinds: tuple[str, ...], default: str) -> Any:
        names = [m for m, e in index.encoders.items() if e.modality in kinds]
        return Query(
            None,
            description=f"The model's modality of the query (default: {default}).",
            json_schema_extra={"enum": names} if names else None,
        )

    def response(query: str, k: int, hits: list[Hit]) -> SearchResponse:
        return SearchResponse(query=query, k=k, results=[result(h) for h in hits])

    def run_search(query: str, k: int, **kwargs: Any) -> SearchResponse:
        with _refused():
            hits = index.search(k=k, **kwargs)
        return response(query, k, hits)

    def route_encoder(modality: str, kinds: tuple[str, ...]) -> Encoder:
        """The encoder of ``modality``; 400 unless the model has it, of one of the ``kinds`` the route takes."""
        encoder = index.encoders.get(modality)
        if encoder is None:
            raise HTTPException(400, f"the model has no modality {modality!r}; it has {', '.join(index.encoders)}")
        if encoder.modality not in kinds:
            if encoder.modality == "text":
                raise HTTPException(400, f"{modality!r} takes text queries: send them to /search")
            raise HTTPException(400, f"{modality!r} takes {encoder.modality} files: send them to /search/image")
        return encoder

    def default_modality(kind: str) -> str:
        """The model's modality of ``kind`` that a file query takes when none is named: the
        one called ``kind``, else the only one; 400 when there is none, or several."""
        names = [m for m, e in index.encoders.items() if e.modality == kind]
        if kind in names:
            return kind
        if len(names) == 1:
            return names[0]
        if not names:
            raise HTTPException(400, f"the model has no {kind} modality; it has {', '.join(index.encoders)}")
        raise HTTPException(400, f"the model has several {kind} modalities ({', '.join(names)}): name one in modality")

    async def search_upload(
        upload: UploadFile, k: int, modality: str, kinds: tuple[str, ...], min_probability: float | None
    ) -> SearchResponse:
        """Search by an uploaded file of ``modality`` (one of ``kinds``): written to a temporary
        file (deleted after), its header checked, encoded; errors name the upload, never the
        temporary file."""
        encoder = route_encoder(modality, kinds)
        name = upload.filename or "upload"
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"the upload is over {MAX_UPLOAD_BYTES // 2**20} MB")
        if not data:
            raise HTTPException(400, f"upload {name!r} is empty")
        with tempfile.NamedTemporaryFile(suffix=Path(name).suffix) as file:
            file.write(data)
            file.flush()
            try:
                if encoder.modality in HEADER_CHECKS:
                    HEADER_CHECKS[encoder.modality](file.name)
                return await run_in_threadpool(
                    run_search, name, k, queries={modality: file.name}, min_probability=min_probability
                )
            except HTTPException as error:
                raise HTTPException(error.status_code, error.detail.replace(file.name, f"upload {name!r}")) from None

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health", responses=_errors(400))
    def health() -> Health:
        """Liveness, and what is being served."""
        return Health(
            status="ok",
            items=len(index),
            modality=index.modality,
            encoders={m: e.name for m, e in index.encoders.items()},
            aligner=type(index.model.aligner).__name__,
            calibrated=list(index.model.calibration),
            bridged=list(index.model.bridges),
            version=xmodal.__version__,
        )

    @app.get("/search", responses=_errors(400, 401, 413, 414, 422))
    async def search_text(
        q: str = Query(description="The text query.", json_schema_extra={"minLength": 1, "pattern": r"\S"}),
        k: int = k_parameter(),
        csls: CSLS = False,
        modality: str | None = modality_parameter(("text",), "the model's text modality"),
        min_probability: MinProbability = None,
    ) -> SearchResponse:
        """The ``k`` gallery items closest to a text query (encoded, then mapped to the shared
        space); concurrent queries are encoded and searched together."""
        if any(ord(c) < 32 and c not in "\t\n\r" for c in q):
            raise HTTPException(400, "the query holds control characters")
        if modality is not None:
            route_encoder(modality, ("text",))  # never a file path of the server
        if batcher is not None:
            with _refused():
                hits = await batcher.search(q, Options(modality, k, csls, min_probability))
            return response(q, k, hits)
        query: dict[str, Any] = {"text": q} if modality is None else {"queries": {modality: q}}
        return await run_in_threadpool(run_search, q, k, **query, csls=csls, min_probability=min_probability)

    @app.post("/search/image", responses=_errors(400, 401, 413, 414, 422))
    async def search_image(
        image: Annotated[UploadFile, File(description="An image (or audio, or .npy vector) file, at most 10 MB.")],
        k: int = k_parameter(),
        modality: str | None = modality_parameter(("image", "audio", "vector"), "the model's image modality"),
        min_probability: MinProbability = None,
    ) -> SearchResponse:
        """The ``k`` gallery items closest to an uploaded file: an image, or with ``modality`` a
        file of any file modality of the model (audio, a vector in ``.npy``)."""
        kinds = ("image", "audio", "vector")
        return await search_upload(image, k, modality or default_modality("image"), kinds, min_probability)

    @app.post("/search/audio", responses=_errors(400, 401, 413, 414, 422))
    async def search_audio(
        audio: Annotated[
            UploadFile,
            File(description=f"A clip: WAV, OGG, FLAC or MP3, at most 10 MB and {MAX_AUDIO_SECONDS:g} s."),
        ],
        k: int = k_parameter(),
        modality: str | None = modality_parameter(("audio",), "the model's audio modality"),
        min_probability: MinProbability = None,
    ) -> SearchResponse:
        """The ``k`` gallery items closest to an uploaded clip (e.g. speech). A clip over
        30 s (read from its header, before decoding) is refused with 413; an empty, silent or
        unreadable one with 400."""
        return await search_upload(audio, k, modality or default_modality("audio"), ("audio",), min_probability)

    @app.get("/items/{item_id:path}", responses=_errors(400, 401, 404, 414))
    def item(item_id: str = item_id_parameter()) -> ItemResponse:
        """An item's metadata: path and captions."""
        found = _item(index, item_id)
        return ItemResponse(
            id=found.id,
            path=shown(found.path),
            captions=list(found.captions),
            thumbnail=_thumbnail_url(index, found.id),
        )

    @app.get(
        "/thumbnails/{item_id:path}",
        responses={200: {"content": {"image/jpeg": {}}}, **_errors(400, 401, 404, 414)},
    )
    def thumbnail(item_id: str = item_id_parameter()) -> Response:
        """A JPEG thumbnail (at most 256 px a side) of an item's image."""
        found = _item(index, item_id)
        if not found.path:
            raise HTTPException(404, f"item {item_id!r} has no image")
        try:
            jpeg = _thumbnail(found.path)
        except ValueError as error:
            raise HTTPException(404, str(error)) from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get(
        "/media/{item_id:path}",
        responses={
            200: {"content": {t: {} for t in (*AUDIO_TYPES.values(), OTHER_AUDIO_TYPE)}},
            **_errors(400, 401, 404, 414),
        },
    )
    def media(item_id: str = item_id_parameter()) -> Response:
        """The clip of an item of an audio gallery, for playback (byte ranges served)."""
        found = _item(index, item_id)
        if index.storage.gallery_kind != "audio" or not found.path:
            raise HTTPException(404, f"item {item_id!r} has no audio (the gallery holds {index.storage.gallery_kind})")
        try:
            status = os.stat(found.path)
            if not stat.S_ISREG(status.st_mode):  # a FIFO or a device would block or never end
                raise HTTPException(404, f"the audio of item {item_id!r} is not a regular file")
            kind = AUDIO_TYPES.get(soundfile.info(found.path).format, OTHER_AUDIO_TYPE)
        except (OSError, RuntimeError):  # the file is gone, unreadable, or not audio (LibsndfileError)
            raise HTTPException(404, f"the audio of item {item_id!r} cannot be read") from None
        return FileResponse(found.path, media_type=kind, stat_result=status, headers={"Cache-Control": "max-age=3600"})

    return app


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """A query the index refuses (bad k, empty text, unreadable image (DataError) or audio
    (EncoderError): a ``ValueError``) as a 400."""
    try:
        yield
    except ValueError as error:
        raise HTTPException(400, str(error)) from None


def _common_folder(index: Searcher) -> str | None:
    """The deepest folder holding every item's file (None for a gallery of texts)."""
    paths = [item.path for item in index.items if item.path]
    return os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else None


def _item(index: Searcher, item_id: str) -> IndexItem:
    """The item called ``item_id``: ids are looked up in the index, never used as paths."""
    if item_id.startswith("/") or ".." in item_id.split("/"):
        raise HTTPException(400, f"invalid item id {item_id!r}")
    try:
        return index.item(item_id)
    except KeyError as error:
        raise HTTPException(404, error.args[0]) from None


def _thumbnail_url(index: Searcher, item_id: str) -> str | None:
    return f"/thumbnails/{quote(item_id, safe='')}" if index.storage.gallery_kind == "image" else None


def _media_url(index: Searcher, item_id: str) -> str | None:
    return f"/media/{quote(item_id, safe='')}" if index.storage.gallery_kind == "audio" else None


def _check_image(path: str) -> None:
    """Refuse an unreadable image (400) or one over :data:`MAX_PIXELS` (413), from its header."""
    try:
        check_pixels(path, MAX_PIXELS)
    except DataError as error:
        raise HTTPException(413 if "pixels" in str(error) else 400, str(error)) from None


def _check_audio(path: str) -> None:
    """Refuse anything but a WAV, OGG, FLAC or MP3 clip holding samples (400), or a clip over
    :data:`MAX_AUDIO_SECONDS` (413), from its header (soundfile decodes no more frames than
    the header counts)."""
    formats = "send a WAV, OGG, FLAC or MP3 clip"
    try:
        info = soundfile.info(path)
    except soundfile.LibsndfileError as error:
        reason = error.error_string.rstrip(".")
        raise HTTPException(400, f"cannot read audio {path}: {reason[:1].lower()}{reason[1:]}; {formats}") from None
    if info.format not in AUDIO_TYPES:
        raise HTTPException(400, f"cannot read audio {path}: {info.format_info} is not taken; {formats}")
    if info.frames <= 0:
        raise HTTPException(400, f"{path}: no audio samples (an empty or truncated clip)")
    if info.duration > MAX_AUDIO_SECONDS:
        raise HTTPException(413, f"{path}: {info.duration:.1f} s of audio, over the limit of {MAX_AUDIO_SECONDS:g} s")


HEADER_CHECKS = {"image": _check_image, "audio": _check_audio}  # by encoder kind, before decoding an upload


@functools.lru_cache(maxsize=2048)
def _thumbnail(path: str) -> bytes:
    return jpeg_thumbnail(path, THUMBNAIL_PIXELS)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """422 with one readable line, e.g. ``k: Input should be a valid integer``."""
    assert isinstance(error, RequestValidationError)
    messages = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in error.errors()]
    return JSONResponse({"detail": "; ".join(messages)}, status_code=422)
