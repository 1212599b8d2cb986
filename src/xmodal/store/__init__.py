"""Embeddings on disk: the content-keyed cache, and the embeddings of a dataset split with the
item of every row (the relevance labels); out of core, shard folders written through an
engine (this process, or a Ray cluster)."""

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
from xmodal.store.encode import EncodedSplit, encode_split, encode_to_shards, is_encoded_split
from xmodal.store.engine import ENGINES, Engine, LocalEngine, RayEngine, make_engine
from xmodal.store.shards import ShardError, Shards, ShardWriter, write_shards

__all__ = [
    "ENGINES",
    "EmbeddingStore",
    "EncodedSplit",
    "EncoderLike",
    "Engine",
    "LocalEngine",
    "ModalityEmbeddings",
    "RayEngine",
    "ShardError",
    "ShardWriter",
    "Shards",
    "SplitEmbeddings",
    "choose_encoders",
    "embed_modalities",
    "embed_modality",
    "embed_split",
    "encode_split",
    "encode_to_shards",
    "is_encoded_split",
    "item_keys",
    "make_engine",
    "resolve_encoder",
    "write_shards",
]
