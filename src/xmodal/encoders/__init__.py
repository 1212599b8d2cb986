"""Pretrained encoders that run offline: a registry of names, batched, cached by the store."""

from xmodal.encoders.base import Encoder, EncoderError
from xmodal.encoders.combined import ConcatEncoder, MeanEncoder
from xmodal.encoders.registry import ENCODERS, get_encoder

__all__ = ["ENCODERS", "ConcatEncoder", "Encoder", "EncoderError", "MeanEncoder", "get_encoder"]
