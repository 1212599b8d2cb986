"""Aligners: map embeddings of several modalities into one shared space."""

from xmodal.align.base import Aligner, NotFittedError
from xmodal.align.closed_form import CCAAligner, IdentityAligner, LeastSquaresAligner, PivotAligner, ProcrustesAligner
from xmodal.align.few_pair import SelfTrainingAligner

__all__ = [
    "Aligner",
    "CCAAligner",
    "IdentityAligner",
    "LeastSquaresAligner",
    "NotFittedError",
    "PivotAligner",
    "ProcrustesAligner",
    "SelfTrainingAligner",
]
