"""The HTTP search service: a FastAPI app over an :class:`~xmodal.search.Searcher` and its search page."""

from xmodal.serve.app import create_app

__all__ = ["create_app"]
