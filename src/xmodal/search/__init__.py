"""Search indexes: galleries of items, their storage (FAISS, items, atomic files) and the
searcher that answers queries with a model's encoders and the shared scoring code."""

from xmodal.search.gallery import IndexItem, gallery_source, items_from_dataset, items_from_folder, items_from_texts
from xmodal.search.searcher import Hit, Searcher
from xmodal.search.storage import IndexStorage

__all__ = [
    "Hit",
    "IndexItem",
    "IndexStorage",
    "Searcher",
    "gallery_source",
    "items_from_dataset",
    "items_from_folder",
    "items_from_texts",
]
