"""Where xmodal keeps its files by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$XMODAL_CACHE``, else ``.cache/xmodal`` under the current directory."""
    return Path(os.environ.get("XMODAL_CACHE", ".cache/xmodal"))
