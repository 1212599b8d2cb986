"""Pretrained encoders that run offline: a registry of names, batched, cached by the store."""

from xmodal.encoders.base import Encoder, EncoderError
from xmodal.encoders.combined import ConcatEncoder, MeanEncoder
from xmodal.encoders.registry import ENCODERS, default_encoder, encoder_paths, get_encoder
from xmodal.encoders.vector import VECTOR_ENCODER, VectorEncoder

__all__ = [
    "ENCODERS",
    "VECTOR_ENCODER",
    "ConcatEncoder",
    "Encoder",
    "EncoderError",
    "MeanEncoder",
    "VectorEncoder",
    "default_encoder",
    "encoder_paths",
    "get_encoder",
]
