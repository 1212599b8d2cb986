"""Scoring in a shared space: similarity functions, CSLS, fusion of query modalities, learned
scorers, re-ranking (query-bank normalisation, Sinkhorn balancing, k-reciprocal, the training-set bridge) and
exact top-k search. Evaluation and the search index use the same code."""

from xmodal.retrieval.fusion import SumScorer, check_fusion, fuse_mean, fused_scorer
from xmodal.retrieval.rerank import (
    BANK_NORMALISERS,
    BankNormaliser,
    Bridge,
    KReciprocal,
    QueryBridge,
    Rerank,
    Reranked,
    SinkhornNormaliser,
    group_means,
)
from xmodal.retrieval.similarity import SIMILARITIES, Scorer, Scores, pairwise
from xmodal.retrieval.topk import search, topk
from xmodal.retrieval.zeroshot import class_prototypes, zero_shot_scores

__all__ = [
    "BANK_NORMALISERS",
    "SIMILARITIES",
    "BankNormaliser",
    "Bridge",
    "KReciprocal",
    "QueryBridge",
    "Rerank",
    "Reranked",
    "Scorer",
    "Scores",
    "SinkhornNormaliser",
    "SumScorer",
    "check_fusion",
    "class_prototypes",
    "fuse_mean",
    "fused_scorer",
    "group_means",
    "pairwise",
    "search",
    "topk",
    "zero_shot_scores",
]
