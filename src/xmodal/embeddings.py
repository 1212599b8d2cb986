"""Embeddings of a dataset split, through the cache, with the relevance labels of each row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmodal.data import PairedDataset
from xmodal.data.dataset import pair_rows
from xmodal.encoders import get_encoder
from xmodal.store import EmbeddingStore


@dataclass
class SplitEmbeddings:
    """Embeddings of one split with the item index of every row (the relevance labels)."""

    text: np.ndarray
    image: np.ndarray
    text_items: np.ndarray
    image_items: np.ndarray

    def training_pairs(self) -> dict[str, np.ndarray]:
        """Every (caption, image) pair of the same item, row-paired."""
        t_rows, i_rows = pair_rows(self.text_items, self.image_items)
        return {"text": self.text[t_rows], "image": self.image[i_rows]}

    def pair_items(self) -> np.ndarray:
        """The item of each row of :meth:`training_pairs` (the ``groups`` of trained heads)."""
        t_rows, _ = pair_rows(self.text_items, self.image_items)
        return self.text_items[t_rows]

    def first_pairs(self) -> dict[str, np.ndarray]:
        """One (first caption, image) pair per item: a validation set for trained heads."""
        t_rows, i_rows = pair_rows(self.text_items, self.image_items)
        _, first = np.unique(self.text_items[t_rows], return_index=True)
        return {"text": self.text[t_rows[first]], "image": self.image[i_rows[first]]}


def embed_split(
    dataset: PairedDataset,
    store: EmbeddingStore,
    text_encoder: str,
    image_encoder: str,
    *,
    backend: str = "onnx",
    progress: bool = True,
) -> SplitEmbeddings:
    """Embed the text and image values of ``dataset`` through the cache."""
    texts = dataset.flatten("text")
    images = dataset.flatten("image")
    t_enc = get_encoder(text_encoder, backend=backend, cache_dir=store.root)
    i_enc = get_encoder(image_encoder, backend=backend, cache_dir=store.root)
    return SplitEmbeddings(
        text=store.embed(t_enc, texts.values, label=f"{dataset.name}/text", progress=progress),
        image=store.embed(i_enc, images.values, label=f"{dataset.name}/image", progress=progress),
        text_items=texts.item_index,
        image_items=images.item_index,
    )
