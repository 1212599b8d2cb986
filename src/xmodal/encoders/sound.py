"""General-sound encoder: aiSFX (Ma & Lerch, ISMIR 2022), from the PyPI package ``aisfx``.

``aisfx`` is the convolutional part of the DCASE 2018 cross-task baseline CNN, trained to classify
sounds of nine sound-effects libraries at once (Pro Sound Effects, Soundly and a mix labelled
with the Universal Category System; six collections with labels of their own, e.g. Series
6000/9000); its weights (25 MB, CC BY 4.0) ship inside the wheel. A
clip is decoded by :func:`~xmodal.encoders.audio.load_audio` at 44.1 kHz mono (cut to 30 s),
scaled to a peak of 1 (so the gain of a recording does not matter) and turned into the
model's 96-band log-mel spectrogram, computed here with NumPy as the package's Essentia front
end does (2048-sample Hann frames every 1024 samples, the first centred on sample 0; HTK mel
bands of unit area over the power spectrum; log10(1 + 10⁴·x) / 9.4578). The spectrogram is cut
into 100-frame blocks (2.3 s) every 50 frames, plus one ending on the last frame; a shorter
clip is one block padded with zeros. Each block gives a 512-d embedding, and the clip's
embedding is the mean of its blocks'. A silent, empty or unreadable clip is an error naming
the file.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from xmodal.encoders.audio import load_audio
from xmodal.encoders.base import EncoderError

SAMPLE_RATE = 44_100
FRAME, HOP, BANDS = 2048, 1024, 96
LOG_SCALE = 9.457798957824707  # the package's spectrogram normalisation ("original": 0 .. this)
BLOCK, BLOCK_HOP = 100, 50  # spectrogram frames per block (2.3 s), and between blocks
_POOLING_VERSION = "peak/blocks-100-50-end/mean/v1"


@functools.cache
def mel_filters() -> np.ndarray:
    """Essentia's HTK mel filter bank (``warping`` weights, ``unit_sum``), (BANDS, FRAME // 2 + 1) float32."""
    freqs = np.arange(FRAME // 2 + 1) * SAMPLE_RATE / FRAME
    mel = 2595.0 * np.log10(1.0 + freqs / 700.0)
    edges = np.linspace(0.0, mel[-1], BANDS + 2)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = np.where((mel >= low) & (mel < centre), (mel - low) / (centre - low), 0.0)
    falling = np.where((mel >= centre) & (mel < high), (high - mel) / (high - centre), 0.0)
    filters = rising + falling
    return (filters / filters.sum(axis=1, keepdims=True)).astype(np.float32)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """The model's input spectrogram of 44.1-kHz ``samples`` (n,), scaled to a peak of 1: (frames, BANDS) float32."""
    samples = samples / np.abs(samples).max()
    count = -(-len(samples) // HOP) + 1  # frames centred on 0, HOP, ... up to the first at or past the end
    padded = np.pad(samples, (FRAME // 2, FRAME))
    frames = padded[np.arange(count)[:, None] * HOP + np.arange(FRAME)] * np.hanning(FRAME).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return (np.log10(1.0 + 1e4 * (power @ mel_filters().T)) / LOG_SCALE).astype(np.float32)


def blocks(spectrogram: np.ndarray) -> np.ndarray:
    """(frames, BANDS) -> (n, BLOCK, BANDS): blocks every BLOCK_HOP frames plus one ending on the
    last frame; fewer than BLOCK frames give one block padded with zeros."""
    frames = len(spectrogram)
    if frames <= BLOCK:
        return np.pad(spectrogram, ((0, BLOCK - frames), (0, 0)))[None]
    starts = sorted({*range(0, frames - BLOCK + 1, BLOCK_HOP), frames - BLOCK})
    return np.stack([spectrogram[s : s + BLOCK] for s in starts])


def _weights_file() -> Path:
    """The checkpoint shipped in the ``aisfx`` package."""
    import importlib.util

    spec = importlib.util.find_spec("aisfx")
    if spec is None or spec.origin is None:
        raise EncoderError("aisfx: package aisfx is not installed (pip install --no-deps aisfx==0.1.2)")
    path = Path(spec.origin).parent / "models" / "checkpoint.pth"
    if not path.is_file():
        raise EncoderError(f"aisfx: the package has no weights file {path}")
    return path


def load_aisfx(path: Path) -> Any:
    """aiSFX's embedding network (torch, eval mode) with the weights at ``path``."""
    import importlib

    import torch
    from aisfx.models.cnn2d import EmbeddingNet

    # The checkpoint is (state dict, {dataset: (numpy index, classes)}); the package's own loader
    # relies on torch.load's old unsafe default, so allow just the numpy types of that table.
    core = "numpy._core" if hasattr(np, "_core") else "numpy.core"  # numpy 2 / 1
    scalar = importlib.import_module(f"{core}.multiarray").scalar
    allowed: list[Any] = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype(np.int64))]
    try:
        with torch.serialization.safe_globals(allowed):
            weights, _ = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as error:
        raise EncoderError(f"aisfx: cannot load the weights {path}: {error}") from None
    prefix = "embedding_net."
    net = EmbeddingNet("max", 3, 1, 64)
    net.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    return net.eval()


class AisfxEncoder:
    """aiSFX embeddings of sound clips, the mean over 2.3-s blocks of the clip's log-mel spectrogram."""

    name = "aisfx"
    modality = "audio"

    def __init__(self) -> None:
        self.weights = _weights_file()

    @functools.cached_property
    def _model(self) -> Any:
        return load_aisfx(self.weights)

    @property
    def dim(self) -> int:
        return int(self._model.hl4)

    @functools.cached_property
    def cache_key(self) -> str:
        digest = hashlib.sha256(self.weights.read_bytes()).hexdigest()[:16]
        return f"{self.name}|{digest}|{SAMPLE_RATE}|{FRAME}/{HOP}/{BANDS}|{_POOLING_VERSION}"

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeddings of the clips at ``values`` (paths), (len(values), 512) float32; the network
        sees about ``batch_size`` blocks at a time."""
        rows: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        for path in tqdm(values, desc=self.name, unit="clip", disable=not progress):
            pending.append(blocks(log_mel(load_audio(path, SAMPLE_RATE))))
            if sum(map(len, pending)) >= batch_size:
                rows += self._embed(pending)
                pending = []
        rows += self._embed(pending)
        return np.asarray(rows, dtype=np.float32).reshape(len(values), self.dim)

    def _embed(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """The mean block embedding of each clip's (n_i, BLOCK, BANDS) blocks."""
        import torch

        if not clips:
            return []
        with torch.inference_mode():
            out = self._model(torch.from_numpy(np.concatenate(clips))).numpy()
        return [part.mean(axis=0) for part in np.split(out, np.cumsum([len(c) for c in clips])[:-1])]
