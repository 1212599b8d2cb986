"""Zero-pair alignment: match two unpaired sets by the shape of their similarity structures.

``x`` (``n x d_x``) and ``y`` (``m x d_y``) are embeddings, by two encoders, of sets believed
to hold the same items (or largely the same), with no known pair. :func:`match_unpaired`
looks for the one-to-one correspondence under which the two within-set similarity matrices
agree most (graph matching, Maniparambil et al. CVPR 2024; the FAQ solver of Vogelstein et
al. 2015), then fits an orthogonal map between the two spaces on the matched rows and
re-matches with it (Procrustes/assignment alternation, as in Wasserstein Procrustes, Grave
et al. 2019)::

    matching = match_unpaired(text, image, sample=500)
    scores = matching.transform_x(text_queries) @ matching.transform_y(images).T
    test = match_significance(text, image, matching)
    test.better_than_random, test.p_value

Whether that correspondence means anything cannot be read off its objective: unrelated sets
with cluster structure also match well (the solver finds structure wherever there is some),
and with weak encoders the true correspondence often scores *below* what the solver finds
elsewhere. :func:`match_significance` therefore compares the objective reached on ``x``
and ``y`` with the objectives the same solver reaches on ``x`` and null sets that share
``y``'s clusters and covariance but bear no relation to ``x`` (a Monte Carlo test), in the
objective reached and in how well half of its pairs are recovered from the other half; it
needs no pairs.
Every function is pure: randomness comes from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment, quadratic_assignment

from xmodal.align.linalg import orthogonal_procrustes
from xmodal.core.arrays import check_embeddings, check_int, unit_rows

MIN_ROWS = 10  # fewer rows than this per set leave no structure to match
SIGNATURE_QUANTILES = 64  # length of the similarity-distribution signature of each row


@dataclass(frozen=True, eq=False)
class Matching:
    """Pairs of rows of two unpaired sets and the orthogonal map fitted on them.

    ``x_rows[i]`` is matched with ``y_rows[i]`` (rows of the inputs, after refinement);
    ``start_y_rows[i]`` is ``x_rows[i]``'s partner before refinement (the graph-matching
    solution in :func:`match_unpaired`). ``kernel_alignment`` is the CKA of the two sets'
    kernels under the starting pairs (what graph matching maximises), ``refined_alignment``
    the same under the refined pairs, ``objective`` the mean cosine of the refined pairs in
    the shared space (what the refinement maximises). ``restarts`` is the number of FAQ
    starts that found the starting pairs (0: the pairs were given, not searched).
    """

    x_rows: np.ndarray
    y_rows: np.ndarray
    start_y_rows: np.ndarray
    kernel_alignment: float
    refined_alignment: float
    objective: float
    restarts: int
    x_mean: np.ndarray
    y_mean: np.ndarray
    x_basis: np.ndarray  # d_x x k principal axes of x
    y_basis: np.ndarray  # d_y x k principal axes of y
    rotation: np.ndarray  # k x k: x's principal coordinates -> y's

    def transform_x(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x``'s space in the shared ``k``-dimensional space (unit rows)."""
        return unit_rows(_coordinates(_check(x, "x", self.x_basis.shape[0]), self.x_mean, self.x_basis) @ self.rotation)

    def transform_y(self, y: np.ndarray) -> np.ndarray:
        """Rows of ``y``'s space in the shared ``k``-dimensional space (unit rows)."""
        return _coordinates(_check(y, "y", self.y_basis.shape[0]), self.y_mean, self.y_basis)


@dataclass(frozen=True, eq=False)
class Significance:
    """Monte Carlo test of a :class:`Matching` against null sets (see :func:`match_significance`).

    Two statistics, each with ``p = (1 + #{null >= statistic}) / (1 + nulls)``:
    ``alignment`` (the CKA graph matching reached) and ``stability`` (the share of held-out
    pairs that their profiles against the other pairs recover). ``p_value`` is the larger of
    the two p-values, so ``better_than_random`` (``p_value <= alpha``) needs both.
    """

    alignment: float
    null_alignment: np.ndarray
    stability: float
    null_stability: np.ndarray
    alpha: float

    @property
    def alignment_p_value(self) -> float:
        return (1 + int(np.sum(self.null_alignment >= self.alignment))) / (1 + len(self.null_alignment))

    @property
    def stability_p_value(self) -> float:
        return (1 + int(np.sum(self.null_stability >= self.stability))) / (1 + len(self.null_stability))

    @property
    def p_value(self) -> float:
        return max(self.alignment_p_value, self.stability_p_value)

    @property
    def better_than_random(self) -> bool:
        return self.p_value <= self.alpha

    @property
    def verdict(self) -> str:
        answer = "yes" if self.better_than_random else "no"
        return (
            f"better than random: {answer} (p = {self.p_value:.3g}; CKA {self.alignment:.3f} vs null "
            f"{np.mean(self.null_alignment):.3f} ± {np.std(self.null_alignment):.3f}, p = {self.alignment_p_value:.3g}; "
            f"stability {self.stability:.2f} vs null {np.mean(self.null_stability):.2f} ± "
            f"{np.std(self.null_stability):.2f}, p = {self.stability_p_value:.3g})"
        )


def match_unpaired(
    x: np.ndarray,
    y: np.ndarray,
    *,
    sample: int = 500,
    restarts: int = 3,
    refine_rounds: int = 10,
    n_components: int = 64,
    seed: int = 0,
) -> Matching:
    """Match the rows of two unpaired sets and fit an orthogonal map between their spaces.

    1. Rows are L2-normalised, centred (each set by its own mean) and normalised again; a
       seeded sample of ``s = min(sample, n, m)`` rows is drawn from each set independently
       (when ``s`` is below ``n``, the two samples share only some items: set ``sample`` to
       at least the number of rows to match whole sets).
    2. Graph matching: the permutation ``P`` maximising ``trace(K_x P K_y P^T)``, where ``K``
       are the centred linear kernels of the samples with zero diagonals (equivalently
       maximising their CKA), by FAQ (:func:`scipy.optimize.quadratic_assignment`), best of
       ``restarts`` starts: the first from the assignment of rows with the most similar
       distributions of similarities (a rotation- and order-free signature of each row),
       the others from random doubly stochastic matrices.
    3. Refinement (:func:`fit_matched_map`), up to ``refine_rounds`` times or until the
       pairs stop changing: the rotation ``R`` maximising ``sum_i <a_i R, b_pi(i)>`` over
       matched pairs (both sets in their first ``k = min(n_components, d_x, d_y, s - 1)``
       principal coordinates, unit rows), then the pairs ``pi`` maximising the same sum
       (Hungarian algorithm).

    Cost: each FAQ iteration is ``O(s^3)``; one FAQ run at ``s = 500`` takes about a second
    on one CPU core.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, 3)) @ rng.normal(size=(3, 8)) + 0.1 * rng.normal(size=(60, 8))
    >>> rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    >>> order = rng.permutation(60)
    >>> m = match_unpaired(x, (x @ rotation)[order], n_components=8)
    >>> float(np.mean(order[m.y_rows] == m.x_rows))
    1.0
    """
    x, y = _check_sets(x, y)
    sample = check_int(sample, "sample", MIN_ROWS)
    restarts = check_int(restarts, "restarts", 1)
    rng = np.random.default_rng(seed)
    size = min(sample, len(x), len(y))
    sample_x = np.sort(rng.choice(len(x), size, replace=False))
    sample_y = np.sort(rng.choice(len(y), size, replace=False))
    a, b = _preprocess(x[sample_x], _centre(x)), _preprocess(y[sample_y], _centre(y))
    perm, _ = kernel_match(a, b, restarts=restarts, seed=int(rng.integers(2**63)))
    matching = fit_matched_map(
        x, y, sample_x, sample_y[perm], refine_rounds=refine_rounds, n_components=n_components, seed=seed
    )
    return replace(matching, restarts=restarts)


def fit_matched_map(
    x: np.ndarray,
    y: np.ndarray,
    x_rows: np.ndarray,
    y_rows: np.ndarray,
    *,
    refine_rounds: int = 10,
    n_components: int = 64,
    seed: int = 0,
) -> Matching:
    """Refine the pairs (``x[x_rows[i]]``, ``y[y_rows[i]]``) and fit the map between the spaces.

    Step 3 of :func:`match_unpaired` from given starting pairs (any start: graph matching,
    a random permutation as a baseline, true pairs as a reference). Both sets are taken to
    their first ``k = min(n_components, d_x, d_y, pairs - 1)`` principal coordinates (unit
    rows, axes fitted on all rows of each set). Each round re-pairs the rows to maximise
    ``sum_i <a_i R, b_pi(i)>`` (Hungarian algorithm), where ``R`` is the rotation maximising
    that sum on the current pairs of the other half of the rows (a seeded split: fitted on
    a row's own pair, ``R`` would keep every pair in place), after the first round only on
    its more confident half (pairs scoring above the median: wrong pairs otherwise hold the
    rotation where they stay). The rounds stop when the pairs stop changing; the pairs kept
    are those of the round (the start included) with the highest held-out score, the mean of
    ``<a_i R, b_pi(i)>`` over all pairs with ``R`` fitted on the other half's pairs, so the
    refinement cannot make a match worse by that measure. The returned ``rotation``
    maximises the sum on the kept pairs.
    """
    x, y = _check_sets(x, y)
    refine_rounds = check_int(refine_rounds, "refine_rounds", 0)
    n_components = check_int(n_components, "n_components", 1)
    x_rows, y_rows = np.asarray(x_rows), np.asarray(y_rows)
    if x_rows.ndim != 1 or x_rows.shape != y_rows.shape or len(x_rows) < 2:
        raise ValueError(f"x_rows and y_rows must be 1-D with the same length >= 2, got {x_rows.shape}, {y_rows.shape}")
    for name, rows, n in (("x_rows", x_rows, len(x)), ("y_rows", y_rows, len(y))):
        if not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0 or rows.max() >= n:
            raise ValueError(f"{name} must hold row numbers in [0, {n})")
        if len(np.unique(rows)) != len(rows):
            raise ValueError(f"{name} repeats a row: pairs must be one-to-one")
    x_mean, y_mean = _centre(x), _centre(y)
    a, b = _preprocess(x[x_rows], x_mean), _preprocess(y[y_rows], y_mean)
    k = min(n_components, x.shape[1], y.shape[1], len(x_rows) - 1)
    x_basis, y_basis = _principal_axes(x, x_mean, k), _principal_axes(y, y_mean, k)
    ca, cb = unit_rows(a @ x_basis), unit_rows(b @ y_basis)
    fold = np.random.default_rng(seed).permutation(len(ca)) % 2
    everyone = np.ones(len(ca), dtype=bool)
    current = np.arange(len(ca))  # row i of ca <-> row current[i] of cb
    refined, best = current, _held_out_score(ca, cb, current, fold)
    use = everyone
    for _ in range(refine_rounds):
        new, scores = _cross_fitted_match(ca, cb, current, fold, use)
        if np.array_equal(new, current):
            break
        current = new
        score = _held_out_score(ca, cb, current, fold)
        if score > best:
            refined, best = current, score
        use = scores >= np.median(scores)
        if min(np.sum(use & (fold == 0)), np.sum(use & (fold == 1))) < k:
            use = everyone  # too few confident pairs to fit a k x k rotation on
    rotation = orthogonal_procrustes(ca, cb[refined])[0]
    kx, ky = centred_kernel(a), centred_kernel(b)
    return Matching(
        x_rows=x_rows,
        y_rows=y_rows[refined],
        start_y_rows=y_rows,
        kernel_alignment=_alignment(kx, ky, np.arange(len(ca))),
        refined_alignment=_alignment(kx, ky, refined),
        objective=float(np.mean(np.sum((ca @ rotation) * cb[refined], axis=1))),
        restarts=0,
        x_mean=x_mean,
        y_mean=y_mean,
        x_basis=x_basis,
        y_basis=y_basis,
        rotation=rotation,
    )


def match_significance(
    x: np.ndarray,
    y: np.ndarray,
    matching: Matching,
    *,
    nulls: int = 19,
    alpha: float = 0.05,
    probes: int = 4,
    null_components: int | None = None,
    null_dims: int = 32,
    seed: int = 0,
) -> Significance:
    """Does graph matching single out ``matching``'s correspondence, or would it find as good
    a one in sets that bear no relation to each other?

    Tests, without any pair, the hypothesis "the solver's answer on ``x`` and ``y`` is what it
    gives on ``x`` and a look-alike of ``y`` drawn at random". Each of ``nulls`` null sets
    replaces ``y``'s sample with as many draws from a model of ``y`` that keeps its structure
    but bears no relation to ``x``: a Gaussian mixture of ``null_components`` full-covariance
    components (default ``min(16, s // 10)`` for a sample of ``s`` rows) in ``y``'s first
    ``null_dims`` principal coordinates (its clusters), plus Gaussian residuals with the
    covariance of the rest. The same solver (same starts) matches ``x``'s sample with each
    null set. Two statistics are compared with their null values:

    - *alignment*: the CKA graph matching reaches (``matching.kernel_alignment``);
    - *stability*: a random half of the solution's pairs is held out and re-matched from
      the other half: each held-out row, on either side, is described by its similarities
      to the kept pairs' rows on its side, and the held-out rows are paired by the
      correlation of those profiles (Hungarian algorithm); the share of held-out pairs
      recovered, averaged over ``probes`` random halves. Pairs the two structures single
      out are recovered from the rest; pairs that are one of many equally good
      arrangements are not.

    The verdict needs both (``p_value`` is the larger p-value; ``nulls = 19`` can reach
    0.05). Alignment alone is not enough: real embeddings hold structure a mixture does not
    mimic, so real sets out-match the null sets even with no item in common (measured in
    ``benchmarks/zero_pair.py``), and a null with ``y``'s covariance alone
    (``null_components=1``) is beaten by any two clustered sets. Stability is calibrated by
    the same null sets, and there real sets with no item in common do not stand out. A
    "yes" says the solver's answer is singled out by the two structures; it does not say
    how many pairs are right, and a match with few right pairs can get a "no".

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, 3)) @ rng.normal(size=(3, 8)) + 0.1 * rng.normal(size=(60, 8))
    >>> y = (x @ np.linalg.qr(rng.normal(size=(8, 8)))[0])[rng.permutation(60)]
    >>> match_significance(x, y, match_unpaired(x, y), nulls=9, alpha=0.1, null_dims=8).better_than_random
    True
    """
    x, y = _check_sets(x, y)
    nulls = check_int(nulls, "nulls", 1)
    probes = check_int(probes, "probes", 1)
    size = len(matching.x_rows)
    if null_components is None:
        null_components = max(1, min(16, size // 10))
    null_components = check_int(null_components, "null_components", 1)
    null_dims = check_int(null_dims, "null_dims", 1)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if matching.restarts == 0:
        raise ValueError("matching's pairs were given, not found by graph matching: there is no search to test")
    if matching.x_rows.max() >= len(x) or matching.y_rows.max() >= len(y):
        raise ValueError("matching was not fitted on these x and y (its rows are out of range)")
    if null_components > size // 5:
        raise ValueError(
            f"null_components must be at most {size // 5} for a sample of {size} rows, got {null_components}"
        )
    a = _preprocess(x[matching.x_rows], matching.x_mean)
    b = _preprocess(y[matching.start_y_rows], matching.y_mean)  # row i is x_rows[i]'s partner
    ka = centred_kernel(a)
    rng = np.random.default_rng(seed)
    stability = _held_out_return(ka, centred_kernel(b), np.arange(size), probes, rng)
    null_alignment, null_stability = np.empty(nulls), np.empty(nulls)
    for i in range(nulls):
        fake = _mixture_null(b, null_components, null_dims, rng)
        perm, null_alignment[i] = kernel_match(a, fake, restarts=matching.restarts, seed=int(rng.integers(2**63)))
        null_stability[i] = _held_out_return(ka, centred_kernel(fake), perm, probes, rng)
    return Significance(matching.kernel_alignment, null_alignment, stability, null_stability, alpha)


def kernel_match(a: np.ndarray, b: np.ndarray, *, restarts: int = 3, seed: int = 0) -> tuple[np.ndarray, float]:
    """The permutation ``perm`` (row ``i`` of ``a`` <-> row ``perm[i]`` of ``b``) maximising
    ``trace(K_a P K_b P^T)`` for the centred linear kernels (:func:`centred_kernel`) of two
    sets of ``s`` rows each, best of ``restarts`` FAQ runs (see :func:`match_unpaired`).
    Returns ``(perm, CKA)``: the objective divided by ``||K_a||_F ||K_b||_F``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"expected two 2-D arrays with the same number of rows, got {a.shape} and {b.shape}")
    restarts = check_int(restarts, "restarts", 1)
    ka, kb = centred_kernel(a), centred_kernel(b)
    rng = np.random.default_rng(seed)
    starts: list[np.ndarray | str] = [_signature_start(ka, kb), *["randomized"] * (restarts - 1)]
    best, best_value = np.arange(len(a)), -np.inf
    for start in starts:
        options = {"maximize": True, "P0": start, "rng": np.random.default_rng(rng.integers(2**63))}
        result = quadratic_assignment(ka, kb, method="faq", options=options)
        value = _alignment(ka, kb, result.col_ind)
        if value > best_value:
            best, best_value = result.col_ind, value
    return best, best_value


def centred_kernel(a: np.ndarray) -> np.ndarray:
    """``H a a^T H`` (``H`` the centring matrix) with a zero diagonal, as float64."""
    a = np.asarray(a, dtype=np.float64)
    a = a - a.mean(axis=0)
    kernel = a @ a.T
    np.fill_diagonal(kernel, 0.0)
    return kernel


def _held_out_return(ka: np.ndarray, kb: np.ndarray, perm: np.ndarray, probes: int, rng: np.random.Generator) -> float:
    """Mean share of held-out rows that get their partner in ``perm`` back when a random half
    of the pairs is held out and re-matched from the other half: each held-out row of ``ka``
    and each held-out partner in ``kb`` is described by its (centred, unit) similarities to
    the kept pairs' rows, and the held-out rows are paired to maximise the sum of the
    correlations of those profiles (Hungarian algorithm)."""
    aligned = kb[np.ix_(perm, perm)]  # row i of ka <-> row i of aligned
    returned = []
    for _ in range(probes):
        held = np.zeros(len(perm), dtype=bool)
        held[rng.choice(len(perm), len(perm) // 2, replace=False)] = True
        profile_a, profile_b = ka[np.ix_(held, ~held)], aligned[np.ix_(held, ~held)]
        profile_a = unit_rows(profile_a - profile_a.mean(axis=1, keepdims=True))
        profile_b = unit_rows(profile_b - profile_b.mean(axis=1, keepdims=True))
        _, cols = linear_sum_assignment(-(profile_a @ profile_b.T))
        returned.append(np.mean(cols == np.arange(len(cols))))
    return float(np.mean(returned))


def _cross_fitted_match(
    ca: np.ndarray, cb: np.ndarray, perm: np.ndarray, fold: np.ndarray, use: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``pi`` maximising ``sum_i <ca_i R_(i), cb_pi(i)>`` and each new pair's score,
    where ``R_(i)`` is the rotation fitted on the current pairs ``perm`` of the rows in
    ``use`` of the other ``fold`` than row ``i``'s."""
    scores = np.empty((len(ca), len(cb)))
    for part in (0, 1):
        own, fit = fold == part, (fold != part) & use
        rotation = orthogonal_procrustes(ca[fit], cb[perm[fit]])[0]
        scores[own] = (ca[own] @ rotation) @ cb.T
    new = linear_sum_assignment(-scores)[1]
    return new, scores[np.arange(len(ca)), new]


def _held_out_score(ca: np.ndarray, cb: np.ndarray, perm: np.ndarray, fold: np.ndarray) -> float:
    """Mean of ``<ca_i R_(i), cb_perm(i)>`` with ``R_(i)`` fitted on the pairs of the other fold."""
    total = 0.0
    for part in (0, 1):
        own, other = fold == part, fold != part
        rotation = orthogonal_procrustes(ca[other], cb[perm[other]])[0]
        total += float(np.sum((ca[own] @ rotation) * cb[perm[own]]))
    return total / len(ca)


def _alignment(ka: np.ndarray, kb: np.ndarray, perm: np.ndarray) -> float:
    """CKA of ``ka`` and ``kb`` with ``kb``'s rows and columns taken in the order ``perm``."""
    norm = np.linalg.norm(ka) * np.linalg.norm(kb)
    return float(np.sum(ka * kb[np.ix_(perm, perm)]) / norm) if norm > 0 else 0.0


def _signature_start(ka: np.ndarray, kb: np.ndarray) -> np.ndarray:
    """A permutation matrix pairing rows whose similarity distributions (quantiles of the
    kernel row, on the scale of each kernel's norm) are closest: unchanged by rotating a
    set or reordering its rows, so it recovers planted correspondences that FAQ from random
    starts misses (the local distribution of distances of Mémoli 2011)."""
    levels = np.linspace(0.0, 1.0, SIGNATURE_QUANTILES)
    sa = np.quantile(ka, levels, axis=1).T * (len(ka) / max(float(np.linalg.norm(ka)), 1e-300))
    sb = np.quantile(kb, levels, axis=1).T * (len(kb) / max(float(np.linalg.norm(kb)), 1e-300))
    cost = np.sum(sa**2, axis=1)[:, None] + np.sum(sb**2, axis=1)[None, :] - 2 * sa @ sb.T
    _, cols = linear_sum_assignment(cost)
    start = np.zeros_like(ka)
    start[np.arange(len(ka)), cols] = 1.0
    return start


def _mixture_null(b: np.ndarray, components: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    """As many rows as ``b`` drawn from a model of ``b`` (see :func:`match_significance`),
    preprocessed like ``b``."""
    from sklearn.mixture import GaussianMixture

    centred = b - b.mean(axis=0)
    k = min(dims, b.shape[1], len(b) - 1)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    scores = centred @ vt[:k].T
    residual = centred - scores @ vt[:k]
    reg = 1e-3 * float(np.mean(np.var(scores, axis=0))) + 1e-12
    mixture = GaussianMixture(components, covariance_type="full", reg_covar=reg, random_state=int(rng.integers(2**31)))
    drawn, _ = mixture.fit(scores).sample(len(b))
    # Random Gaussian combinations of the residual rows have the residuals' covariance.
    noise = rng.normal(size=(len(b), len(b))) @ residual / np.sqrt(len(b))
    return _preprocess(drawn @ vt[:k] + noise, np.zeros(b.shape[1]))


def _centre(x: np.ndarray) -> np.ndarray:
    """The mean of the unit rows of ``x`` (float64)."""
    return unit_rows(x).mean(axis=0, dtype=np.float64)


def _preprocess(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Unit rows, minus ``mean``, unit rows again (float64)."""
    return unit_rows(unit_rows(np.asarray(x, dtype=np.float64)) - mean)


def _principal_axes(x: np.ndarray, mean: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` principal axes (``d x k``) of the preprocessed rows of ``x``."""
    rows = _preprocess(x, mean)
    centred = rows - rows.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return vectors[:, ::-1][:, :k]


def _coordinates(x: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return unit_rows(_preprocess(x, mean) @ basis)


def _check_sets(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = check_embeddings(x, "x"), check_embeddings(y, "y")
    for name, rows in (("x", len(x)), ("y", len(y))):
        if rows < MIN_ROWS:
            raise ValueError(f"{name} has {rows} rows; matching needs at least {MIN_ROWS}")
    return x, y


def _check(x: np.ndarray, name: str, dim: int) -> np.ndarray:
    x = check_embeddings(x, name)
    if x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]}, the matching was fitted on {dim}")
    return x
