"""Named aligner configurations used by the CLI and the benchmark.

Hyper-parameters were chosen on the Flickr8k dev split (benchmarks/RESULTS.md says how).
"""

from __future__ import annotations

from collections.abc import Callable

from xmodal.align.base import Aligner
from xmodal.align.closed_form import CCAAligner, IdentityAligner, LeastSquaresAligner, ProcrustesAligner

ALIGNERS: dict[str, Callable[[], Aligner]] = {
    "identity": IdentityAligner,
    "lstsq text->image": lambda: LeastSquaresAligner("text", "image", ridge=1.0),
    "lstsq image->text": lambda: LeastSquaresAligner("image", "text", ridge=1.0),
    "procrustes text->image": lambda: ProcrustesAligner("text", "image"),
    "procrustes image->text": lambda: ProcrustesAligner("image", "text"),
    "procrustes pca-256": lambda: ProcrustesAligner("text", "image", n_components=256),
    "cca-128": lambda: CCAAligner(n_components=128, weight_power=0.0),
    "cca-128 weighted": lambda: CCAAligner(n_components=128, weight_power=1.0),
}


def make_aligner(name: str) -> Aligner:
    """A fresh, unfitted aligner of the configuration called ``name``."""
    if name not in ALIGNERS:
        raise ValueError(f"unknown aligner {name!r}; known aligners: {', '.join(ALIGNERS)}")
    return ALIGNERS[name]()
