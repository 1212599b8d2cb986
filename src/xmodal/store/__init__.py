"""Embeddings on disk: the content-keyed cache, and the embeddings of a dataset split with the
item of every row (the relevance labels)."""

from xmodal.store.cache import EmbeddingStore, item_keys
from xmodal.store.embeddings import (
    EncoderLike,
    ModalityEmbeddings,
    SplitEmbeddings,
    choose_encoders,
    embed_modalities,
    embed_modality,
    embed_split,
    resolve_encoder,
)

__all__ = [
    "EmbeddingStore",
    "EncoderLike",
    "ModalityEmbeddings",
    "SplitEmbeddings",
    "choose_encoders",
    "embed_modalities",
    "embed_modality",
    "embed_split",
    "item_keys",
    "resolve_encoder",
]
