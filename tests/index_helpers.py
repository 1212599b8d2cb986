"""A small real index for the index, CLI and service tests: Flickr8k items, real encoders."""

from __future__ import annotations

from pathlib import Path

from xmodal.align import Aligner, CCAAligner
from xmodal.data import PairedDataset
from xmodal.embeddings import embed_split
from xmodal.gallery import IndexItem, items_from_dataset
from xmodal.index import Index
from xmodal.store import EmbeddingStore

N_TRAIN, N_GALLERY = 100, 24


def fit_small_aligner(flickr8k: PairedDataset, cache_dir: Path) -> Aligner:
    """Weighted CCA (32-d) fitted on the 500 caption-image pairs of the first 100 train items."""
    train = embed_split(flickr8k.split("train").subset(N_TRAIN), EmbeddingStore(cache_dir), "minilm", "efficientnet-lite0", progress=False)
    return CCAAligner(n_components=32, reg=1.0, weight_power=0.5).fit(train.training_pairs())


def gallery_items(flickr8k: PairedDataset, n: int = N_GALLERY) -> list[IndexItem]:
    """The first ``n`` Flickr8k test images with their captions."""
    return items_from_dataset(flickr8k.split("test").subset(n))


def build_small_index(flickr8k: PairedDataset, cache_dir: Path, **kwargs) -> Index:
    """An index of the first 24 test images (exact search unless ``kind`` says otherwise)."""
    return Index.build(gallery_items(flickr8k), fit_small_aligner(flickr8k, cache_dir), store=EmbeddingStore(cache_dir), **kwargs)
