"""Re-ranking beyond CSLS: query-bank normalisation (inverted softmax, dual softmax, QB-Norm),
k-reciprocal neighbourhood consensus, and the training set as a bridge.

A :class:`Rerank` is fitted once for a gallery (the classes here are
:class:`~xmodal.core.estimator.Estimator`: hyper-parameters in ``__init__``, state saved with
``save``); called with a block of query rows and their scores against that gallery
(``n x n_gallery``), it returns re-ranked float32 scores of the same shape. Re-ranked scores
order the gallery for each query: they are comparable within a row, not across rows (QB-Norm
mixes two scales). :class:`Reranked` applies one to any lazy score matrix, which is how
:func:`xmodal.evaluate.evaluate_retrieval` uses them. The bridge also exists as a query
rewrite (:func:`expand_queries`), which any search of the shared space can take.

**The query bank.** Inverted softmax, dual softmax and QB-Norm normalise each gallery column
over a bank of queries. The bank must be queries of the query modality from the *training*
split, mapped into the shared space by the same aligner; never the evaluated queries
themselves: that makes each query's score depend on the other test queries, a transductive
protocol that inflates benchmarks and that a search serving one query at a time cannot run.
The bridge's training pairs come from the training split for the same reason.
:class:`SinkhornNormaliser` balances a bank against the gallery (optimal transport, uniform
masses). Its bank may be the evaluated queries themselves when a whole set of queries is
matched against a gallery at once (bulk matching): that is transductive, like CSLS with its
default reference, and must be reported as such.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

from xmodal.align import linalg
from xmodal.core.arrays import check_embeddings, check_int, unit_rows
from xmodal.core.estimator import Estimator
from xmodal.retrieval.similarity import Scores, default_chunk_size

if TYPE_CHECKING:
    from scipy import sparse

BANK_NORMALISERS = ("inverted-softmax", "dual-softmax", "qb-norm")


class Rerank(Protocol):
    """Re-ranked scores of query rows ``queries`` (``n x d``) from their ``scores`` against the
    gallery the rerank was fitted for (``n x n_gallery``)."""

    def __call__(self, queries: np.ndarray, scores: np.ndarray) -> np.ndarray: ...


class Reranked:
    """The lazy score matrix ``scores`` with ``rerank`` applied to each block of rows; ``queries``
    are the rows that ``rerank`` receives alongside (the embeddings it was fitted against)."""

    def __init__(self, scores: Scores, queries: np.ndarray, rerank: Rerank) -> None:
        if len(queries) != scores.shape[0]:
            raise ValueError(f"{len(queries)} query rows for a score matrix of shape {scores.shape}")
        self.scores, self.queries, self.rerank = scores, queries, rerank
        self.shape = scores.shape

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        for rows, s in self.scores.chunks():
            yield rows, self.rerank(self.queries[rows], s)


# --- query-bank normalisation -----------------------------------------------------------


def inverted_softmax(scores: np.ndarray, log_normaliser: np.ndarray, beta: float) -> np.ndarray:
    """Log of the inverted softmax (Smith et al. 2017): ``beta s[i, j] - log_normaliser[j]``,
    where ``log_normaliser[j] = log sum_b exp(beta s_bank[b, j])`` over the bank (see
    :class:`BankNormaliser`), i.e. ``log(exp(beta s[i, j]) / sum_b exp(beta s_bank[b, j]))``:
    each gallery column is a softmax over the bank, so a hub that every query likes is
    divided down. The log orders a row like the softmax itself and does not underflow."""
    s = _check_scores(scores, log_normaliser)
    return (beta * s.astype(np.float64) - log_normaliser).astype(np.float32)


def dual_softmax(scores: np.ndarray, log_normaliser: np.ndarray, beta: float) -> np.ndarray:
    """Log of the dual softmax (DSL, Cheng et al. 2021) with the bank in place of the test
    queries for the column softmax: ``log softmax_j(beta s[i, :]) + inverted_softmax``. The row
    softmax only shifts a row, so a row is ordered by ``2 beta s - log_normaliser``: the
    inverted softmax with half the hub penalty."""
    s = _check_scores(scores, log_normaliser).astype(np.float64)
    row = beta * s - _logsumexp(beta * s, axis=1, keepdims=True)
    return (row + beta * s - log_normaliser).astype(np.float32)


def dynamic_inverted_softmax(
    scores: np.ndarray, log_normaliser: np.ndarray, activated: np.ndarray, beta: float
) -> np.ndarray:
    """QB-Norm's dynamic inverted softmax (Bogolin et al., CVPR 2022): the rows whose best
    gallery item is *activated* (among the top hits of some bank query, see
    :class:`BankNormaliser`) become :func:`inverted_softmax`; the other rows keep their scores.
    Only queries heading for a hub are normalised, so a query whose best item no bank query
    prefers is not disturbed. Rows are on two scales: compare scores within a row only."""
    s = _check_scores(scores, log_normaliser)
    if activated.shape != log_normaliser.shape or activated.dtype != bool:
        raise ValueError(f"activated must be a bool array of shape {log_normaliser.shape}, got {activated.shape}")
    out = s.astype(np.float32, copy=True)
    hub_rows = activated[np.argmax(s, axis=1)]
    out[hub_rows] = inverted_softmax(s[hub_rows], log_normaliser, beta)
    return out


class BankNormaliser(Estimator):
    """Inverted softmax, dual softmax or QB-Norm (``kind``, one of :data:`BANK_NORMALISERS`) with
    inverse temperature ``beta`` as a :class:`Rerank`; QB-Norm's activation set is the gallery
    items in the top ``top`` of at least one bank query.

    :meth:`fit` reads the bank's scores against the gallery once, block by block: bank queries
    are training queries (see the module docstring), never the evaluated ones.
    """

    def __init__(self, kind: str = "qb-norm", beta: float = 20.0, top: int = 1) -> None:
        self.kind = kind
        self.beta = beta
        self.top = top

    def fit(self, bank_scores: Scores) -> BankNormaliser:
        """Statistics of each gallery column over the bank: ``log_normaliser_`` (``log sum_b
        exp(beta s[b, j])``) and ``activated_``. ``bank_scores``: bank rows x gallery columns
        (a :class:`~xmodal.retrieval.Scorer` of the bank against the gallery, or a
        :class:`Reranked` one to stack this normaliser on another rerank)."""
        if self.kind not in BANK_NORMALISERS:
            raise ValueError(f"unknown bank normaliser {self.kind!r}; choose one of {', '.join(BANK_NORMALISERS)}")
        _check_positive(self.beta, "beta")
        n_gallery = bank_scores.shape[1]
        top = min(check_int(self.top, "top", minimum=1), n_gallery)
        log_normaliser = np.full(n_gallery, -np.inf)
        activated = np.zeros(n_gallery, dtype=bool)
        for _, s in bank_scores.chunks():
            log_normaliser = np.logaddexp(log_normaliser, _logsumexp(self.beta * s.astype(np.float64), axis=0))
            activated[np.argpartition(s, n_gallery - top, axis=1)[:, n_gallery - top :]] = True
        self.log_normaliser_, self.activated_ = log_normaliser, activated
        return self

    def __call__(self, queries: np.ndarray, scores: np.ndarray) -> np.ndarray:
        self._check_fitted()
        if self.kind == "inverted-softmax":
            return inverted_softmax(scores, self.log_normaliser_, self.beta)
        if self.kind == "dual-softmax":
            return dual_softmax(scores, self.log_normaliser_, self.beta)
        return dynamic_inverted_softmax(scores, self.log_normaliser_, self.activated_, self.beta)


class SinkhornNormaliser(Estimator):
    """Sinkhorn balancing of a bank of queries against the gallery as a :class:`Rerank`: each
    gallery column gets the potential ``g`` of the entropic transport plan between the bank
    and the gallery (uniform masses, temperature ``epsilon``, ``iterations`` scalings;
    :func:`~xmodal.align.linalg.sinkhorn_column_potentials`), and a query row is ranked by
    ``scores / epsilon + g``. Hubs, which the bank as a whole would over-fill, are pushed
    down until every gallery item receives the same mass; the inverted softmax is its first
    half-step. With the evaluated queries as the bank, each row is ordered as the plan between
    them and the gallery orders it (transductive, see the module docstring).
    """

    def __init__(self, epsilon: float = 0.05, iterations: int = 100) -> None:
        self.epsilon = epsilon
        self.iterations = iterations

    def fit(self, bank_scores: Scores) -> SinkhornNormaliser:
        """``potential_`` of each gallery column from the bank's scores (bank rows x gallery
        columns, read whole: ``n_bank x n_gallery`` float32 in memory)."""
        _check_positive(self.epsilon, "epsilon")
        iterations = check_int(self.iterations, "iterations", minimum=1)
        dense = np.empty(bank_scores.shape, dtype=np.float32)
        for rows, s in bank_scores.chunks():
            dense[rows] = s
        self.potential_ = linalg.sinkhorn_column_potentials(dense, self.epsilon, iterations)
        return self

    def __call__(self, queries: np.ndarray, scores: np.ndarray) -> np.ndarray:
        self._check_fitted()
        s = _check_scores(scores, self.potential_)
        return (s.astype(np.float64) / self.epsilon + self.potential_).astype(np.float32)


# --- k-reciprocal neighbourhoods ----------------------------------------------------------


def reciprocal_neighbours(neighbours: np.ndarray) -> sparse.csr_matrix:
    """The k-reciprocal sets of Zhong et al. (2017) within a gallery, from each item's ``k``
    nearest gallery items ``neighbours`` (``n_gallery x k`` indices, itself included):
    ``R[g, h] = 1`` iff ``h`` is among ``g``'s neighbours and ``g`` among ``h``'s. A float32
    0/1 sparse ``n_gallery x n_gallery`` matrix, symmetric."""
    near = _indicator(_check_neighbours(neighbours), len(neighbours))
    return near.multiply(near.T).tocsr()


def k_reciprocal(scores: np.ndarray, reciprocal: sparse.csr_matrix, k: int, weight: float) -> np.ndarray:
    """Neighbourhood consensus in the spirit of k-reciprocal re-ranking (Zhong et al. 2017),
    cross-modal: ``(1 - weight) s[i, g] + weight J(N_k(i), R(g))``, with ``N_k(i)`` the query's
    ``k`` best-scored gallery items, ``R(g)`` the gallery item's k-reciprocal set
    (:func:`reciprocal_neighbours`) and ``J`` the Jaccard index of the two sets. An item gains
    when the items it is mutually close to are also among the query's best: the query's own
    neighbourhood among other test queries is never used."""
    s = check_embeddings(scores, "scores")
    n_gallery = s.shape[1]
    if reciprocal.shape != (n_gallery, n_gallery):
        raise ValueError(f"reciprocal has shape {reciprocal.shape} but the scores have {n_gallery} gallery columns")
    k = min(check_int(k, "k", minimum=1), n_gallery)
    nearest = np.argpartition(s, n_gallery - k, axis=1)[:, n_gallery - k :]
    shared = (_indicator(nearest, n_gallery) @ reciprocal.T).toarray()
    sizes = np.asarray(reciprocal.sum(axis=1)).ravel()
    jaccard = shared / (k + sizes[None, :] - shared)
    return ((1 - weight) * s + weight * jaccard).astype(np.float32)


class KReciprocal(Estimator):
    """:func:`k_reciprocal` with ``k`` and ``weight`` as a :class:`Rerank`; :meth:`fit` finds each
    gallery item's ``k`` nearest gallery items (``neighbours_``) by cosine in the space of the
    rows it is given (the shared space, or the gallery encoder's own space)."""

    def __init__(self, k: int = 10, weight: float = 0.2) -> None:
        self.k = k
        self.weight = weight

    def fit(self, gallery: np.ndarray) -> KReciprocal:
        g = unit_rows(check_embeddings(gallery, "gallery"))
        _check_weight(self.weight)
        k = min(check_int(self.k, "k", minimum=1), len(g))
        neighbours = np.empty((len(g), k), dtype=np.int64)
        step = default_chunk_size(len(g))
        for start in range(0, len(g), step):
            s = g[start : start + step] @ g.T
            neighbours[start : start + step] = np.argpartition(s, len(g) - k, axis=1)[:, len(g) - k :]
        self.neighbours_ = neighbours
        return self

    def __call__(self, queries: np.ndarray, scores: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return k_reciprocal(scores, reciprocal_neighbours(self.neighbours_), self.k, self.weight)


# --- the training set as a bridge ---------------------------------------------------------


def bridge_votes(
    queries: np.ndarray, bank: np.ndarray, votes: np.ndarray, *, beta: float, neighbours: int
) -> np.ndarray:
    """What the training set says about each query: ``v_i = sum_j p_ij u(votes[j])`` (float32,
    ``n_queries x votes' dimension``), ``u`` the unit row.

    ``bank`` holds training queries (the query modality, in the space of ``queries``);
    ``votes[j]`` is what training query ``j`` votes with: its paired item (the bridge proper: a
    caption's nearest training captions vote for the images of their own pairs), or the training
    query itself (a query expansion through the training set), in any one space. ``p_i`` is the
    softmax of ``beta cos(queries[i], bank[j])`` over the query's ``neighbours`` most similar
    training queries, zero elsewhere. Computed in blocks of queries (about 64 MB of cosines).
    """
    q, bank = check_embeddings(queries, "queries"), check_embeddings(bank, "bank")
    votes = check_embeddings(votes, "votes")
    if q.shape[1] != bank.shape[1] or len(bank) != len(votes):
        raise ValueError(
            f"queries {q.shape} and bank {bank.shape} must share a dimension, bank and votes {votes.shape} their rows"
        )
    _check_positive(beta, "beta")
    m = min(check_int(neighbours, "neighbours", minimum=1), len(bank))
    q, bank, votes = unit_rows(q), unit_rows(bank), unit_rows(votes)
    out = np.empty((len(q), votes.shape[1]), dtype=np.float32)
    step = default_chunk_size(len(bank))
    for start in range(0, len(q), step):
        cosines = q[start : start + step] @ bank.T
        near = np.argpartition(cosines, len(bank) - m, axis=1)[:, len(bank) - m :]
        logits = beta * np.take_along_axis(cosines, near, axis=1).astype(np.float64)
        p = np.exp(logits - _logsumexp(logits, axis=1, keepdims=True))
        out[start : start + step] = _rows_matrix(p, near, len(bank)) @ votes
    return out


def bridge(scores: np.ndarray, voted: np.ndarray, gallery: np.ndarray, weight: float) -> np.ndarray:
    """Retrieval through training pairs: ``(1 - weight) s[i, g] + weight <voted[i], u(gallery[g])>``
    with ``voted`` from :func:`bridge_votes` and ``gallery`` in the votes' space (the shared
    space, or the gallery encoder's own space). ``weight = 0`` gives ``scores`` back."""
    s = check_embeddings(scores, "scores")
    g = check_embeddings(gallery, "gallery")
    if voted.shape != (len(s), g.shape[1]) or len(g) != s.shape[1]:
        raise ValueError(f"bridge needs voted ({len(s)}, d) and gallery ({s.shape[1]}, d) for scores {s.shape}; "
                         f"got voted {voted.shape}, gallery {g.shape}")  # fmt: skip
    return ((1 - weight) * s + weight * (voted @ unit_rows(g).T)).astype(np.float32)


def expand_queries(queries: np.ndarray, voted: np.ndarray, weight: float) -> np.ndarray:
    """The bridge as a query rewrite: ``(1 - weight) u(queries) + weight voted``, when ``voted``
    (:func:`bridge_votes`) is in the queries' space. Its cosines to a gallery order each row as
    :func:`bridge` of the plain cosines does; unlike a rerank it serves any search of that
    space (CSLS, an index)."""
    q = check_embeddings(queries, "queries")
    if voted.shape != q.shape:
        raise ValueError(f"voted has shape {voted.shape} but the queries {q.shape}")
    return ((1 - weight) * unit_rows(q) + weight * voted).astype(np.float32)


class Bridge(Estimator):
    """:func:`bridge` as a :class:`Rerank`. :meth:`fit` takes the training pairs, row-paired:
    ``bank`` (training queries, in the space of the queries the rerank will receive),
    ``votes`` (their paired items, or the training queries themselves) and the ``gallery`` in
    the votes' space; ``beta`` and ``neighbours`` as in :func:`bridge_votes`."""

    def __init__(self, beta: float = 20.0, weight: float = 0.3, neighbours: int = 50) -> None:
        self.beta = beta
        self.weight = weight
        self.neighbours = neighbours

    def fit(self, bank: np.ndarray, votes: np.ndarray, gallery: np.ndarray) -> Bridge:
        _check_positive(self.beta, "beta")
        _check_weight(self.weight)
        check_int(self.neighbours, "neighbours", minimum=1)
        bank, votes = check_embeddings(bank, "bank"), check_embeddings(votes, "votes")
        gallery = check_embeddings(gallery, "gallery")
        if len(bank) != len(votes) or votes.shape[1] != gallery.shape[1]:
            raise ValueError(f"bank {bank.shape} and votes {votes.shape} must be row-paired, votes and gallery "
                             f"{gallery.shape} of one dimension")  # fmt: skip
        self.bank_, self.votes_, self.gallery_ = bank, votes, gallery
        return self

    def __call__(self, queries: np.ndarray, scores: np.ndarray) -> np.ndarray:
        self._check_fitted()
        voted = bridge_votes(queries, self.bank_, self.votes_, beta=self.beta, neighbours=self.neighbours)
        return bridge(scores, voted, self.gallery_, self.weight)


# (beta, weight) by direction, chosen on Flickr8k dev (benchmarks/RESULTS.md, section levers)
BRIDGE = {"t2i": (30.0, 0.2), "i2t": (100.0, 0.1)}


class QueryBridge(Estimator):
    """The bridge as a query rewrite (:func:`expand_queries` of :func:`bridge_votes`): fitted on
    training pairs in the shared space, ``bank`` (training queries) row-paired with ``votes``
    (what each votes with: its paired item); :meth:`transform` rewrites queries of the bank's
    space, which any search of that space then takes (CSLS, an index). :data:`BRIDGE` holds
    the settings chosen on Flickr8k dev for text queries (``"t2i"``) and image ones."""

    def __init__(self, beta: float = BRIDGE["t2i"][0], weight: float = BRIDGE["t2i"][1], neighbours: int = 50) -> None:
        self.beta = beta
        self.weight = weight
        self.neighbours = neighbours

    def fit(self, bank: np.ndarray, votes: np.ndarray) -> QueryBridge:
        _check_positive(self.beta, "beta")
        _check_weight(self.weight)
        check_int(self.neighbours, "neighbours", minimum=1)
        bank, votes = check_embeddings(bank, "bank"), check_embeddings(votes, "votes")
        if bank.shape != votes.shape:
            raise ValueError(f"bank {bank.shape} and votes {votes.shape} must be row-paired, in one space")
        self.bank_, self.votes_ = bank, votes
        return self

    def transform(self, queries: np.ndarray) -> np.ndarray:
        self._check_fitted()
        voted = bridge_votes(queries, self.bank_, self.votes_, beta=self.beta, neighbours=self.neighbours)
        return expand_queries(queries, voted, self.weight)


def group_means(x: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first row of each group, mean of the group's unit rows)``, groups in sorted order: what
    an item votes with when it has several paired rows (an image with its captions)."""
    x = check_embeddings(x, "rows")
    if groups.shape != (len(x),):
        raise ValueError(f"groups must have one entry per row ({len(x)}), got shape {groups.shape}")
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    sums = np.zeros((len(first), x.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse.ravel(), unit_rows(x))
    return first, (sums / np.bincount(inverse.ravel())[:, None]).astype(np.float32)


# --- checks -------------------------------------------------------------------------------


def _check_scores(scores: np.ndarray, per_column: np.ndarray) -> np.ndarray:
    s = check_embeddings(scores, "scores")
    if per_column.shape != (s.shape[1],):
        raise ValueError(f"scores have shape {s.shape} but the bank statistics have shape {per_column.shape}")
    return s


def _check_positive(value: float, name: str) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_weight(weight: float) -> None:
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight!r}")


def _check_neighbours(neighbours: np.ndarray) -> np.ndarray:
    """``neighbours``, checked as a non-empty 2-D integer array of its own row numbers."""
    n = len(neighbours)
    if neighbours.ndim != 2 or not neighbours.size or not np.issubdtype(neighbours.dtype, np.integer):
        raise ValueError(f"neighbours must be a non-empty 2-D integer array, got shape {neighbours.shape}")
    if neighbours.min() < 0 or neighbours.max() >= n:
        raise ValueError(f"neighbours must index the {n} gallery rows, got {neighbours.min()}..{neighbours.max()}")
    return neighbours


def _logsumexp(x: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    """``log sum exp(x)`` along ``axis``, shifted by the maximum so that it does not overflow."""
    top = x.max(axis=axis, keepdims=True)
    out = top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))
    return out if keepdims else out.squeeze(axis)


def _rows_matrix(values: np.ndarray, indices: np.ndarray, n_columns: int) -> sparse.csr_matrix:
    """Sparse ``n x n_columns`` matrix holding ``values[i, c]`` at ``(i, indices[i, c])``."""
    from scipy import sparse  # only here: importing scipy.sparse is slow

    n, k = indices.shape
    return sparse.csr_matrix((values.ravel(), indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n_columns))


def _indicator(indices: np.ndarray, n_columns: int) -> sparse.csr_matrix:
    """Float32 0/1 sparse matrix with a 1 at ``(i, indices[i, c])`` for every ``c``."""
    return _rows_matrix(np.ones(indices.shape, dtype=np.float32), indices, n_columns)
