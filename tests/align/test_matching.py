"""Known-answer tests for zero-pair matching (xmodal.align.matching): planted correspondences are
recovered and called significant; unrelated sets, clustered or not, are not."""

from collections.abc import Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from xmodal.align.matching import (
    Matching,
    centred_kernel,
    fit_matched_map,
    kernel_match,
    match_significance,
    match_unpaired,
)


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    # Many small O(n^3) products: threads cost more than they save, and far more when the
    # CPUs are shared.
    with threadpool_limits(1):
        yield


def _rotation(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(rows, cols)))
    return q * np.sign(np.diag(r))


def _clustered(rng: np.random.Generator, n: int, d: int, clusters: int = 8) -> np.ndarray:
    centres = rng.normal(size=(clusters, d)) * 3.0
    return centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, d))


def _planted(seed: int, n: int = 120, d: int = 48, noise: float = 0.2, dy: int | None = None):
    """``x`` clustered; ``y`` = ``x`` rotated (into ``dy`` dims), plus noise, rows shuffled:
    row ``j`` of ``y`` is item ``order[j]`` of ``x``."""
    rng = np.random.default_rng(seed)
    x = _clustered(rng, n, d)
    y = x @ _rotation(rng, dy or d, d).T if dy else x @ _rotation(rng, d, d)
    y = y + noise * y.std() * rng.normal(size=y.shape)
    order = rng.permutation(n)
    return x, y[order], order


def _accuracy(matching: Matching, order: np.ndarray) -> float:
    return float(np.mean(order[matching.y_rows] == matching.x_rows))


# --- match_unpaired -------------------------------------------------------------------------


def test_recovers_planted_permutation_and_calls_it_significant():
    x, y, order = _planted(0)
    matching = match_unpaired(x, y, restarts=2, n_components=32)
    assert _accuracy(matching, order) >= 0.95
    assert matching.kernel_alignment > 0.9
    test = match_significance(x, y, matching, nulls=19)
    assert test.p_value == pytest.approx(0.05)  # no null set reached the planted alignment
    assert test.stability > 0.6  # held-out pairs are recovered from the others (nulls: < 0.4)
    assert test.stability > test.null_stability.max()
    assert test.better_than_random
    assert test.verdict.startswith("better than random: yes")


def test_recovers_planted_permutation_across_dimensions():
    x, y, order = _planted(1, d=32, dy=80)
    matching = match_unpaired(x, y, restarts=1, n_components=32)
    assert _accuracy(matching, order) >= 0.95
    # The fitted map puts each matched pair at nearly the same point of the shared space.
    inverse = np.argsort(order)
    cosines = np.sum(matching.transform_x(x) * matching.transform_y(y[inverse]), axis=1)
    assert matching.transform_x(x).shape == (len(x), 32)
    assert np.median(cosines) > 0.9


def test_signature_start_finds_what_random_starts_miss():
    # Gaussian (unclustered) low-rank clouds: FAQ from random starts stalls in a wrong optimum,
    # the similarity-distribution start lands on the planted one.
    rng = np.random.default_rng(2)
    a = rng.normal(size=(100, 10)) @ rng.normal(size=(10, 40))
    order = rng.permutation(100)
    b = (a @ _rotation(rng, 40, 40))[order]
    perm, cka = kernel_match(a, b, restarts=1)
    assert np.mean(order[perm] == np.arange(100)) == 1.0
    assert cka == pytest.approx(1.0)


def test_independent_sets_are_not_better_than_random():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(100, 32)), rng.normal(size=(100, 48))
    matching = match_unpaired(x, y, restarts=2)
    test = match_significance(x, y, matching, nulls=19)
    assert test.p_value > 0.2
    assert not test.better_than_random
    assert "no" in test.verdict


def test_unrelated_clustered_sets_fool_a_gaussian_null_but_not_the_test():
    # Two unrelated clustered sets match each other better than either matches a Gaussian:
    # against a covariance-only null their alignment looks significant; the default mixture
    # null does not, and neither does the stability of the solution.
    rng = np.random.default_rng(4)
    x, y = _clustered(rng, 120, 32), _clustered(rng, 120, 48)
    matching = match_unpaired(x, y, restarts=2)
    gaussian = match_significance(x, y, matching, nulls=19, null_components=1)
    assert gaussian.alignment_p_value == pytest.approx(0.05)
    test = match_significance(x, y, matching, nulls=19)
    assert test.alignment_p_value > 0.05
    assert test.stability_p_value > 0.05
    assert not test.better_than_random


def test_fit_matched_map_from_true_pairs_and_from_a_partly_right_start():
    x, y, order = _planted(10, noise=0.1)
    inverse = np.argsort(order)  # x row i <-> y row inverse[i]
    rows = np.arange(len(x))
    exact = fit_matched_map(x, y, rows, inverse, refine_rounds=0, n_components=16)
    assert exact.restarts == 0
    np.testing.assert_array_equal(exact.y_rows, inverse)
    np.testing.assert_allclose(exact.rotation @ exact.rotation.T, np.eye(16), atol=1e-10)
    assert exact.objective > 0.9
    # Start with a third of the pairs right: the refinement puts the rest right.
    start = inverse.copy()
    wrong = np.random.default_rng(0).choice(len(x), 80, replace=False)
    start[wrong] = start[np.roll(wrong, 1)]
    refined = fit_matched_map(x, y, rows, start, n_components=16)
    assert np.mean(start == inverse) < 0.4
    assert np.mean(refined.y_rows == inverse) > 0.95
    with pytest.raises(ValueError, match="no search to test"):
        match_significance(x, y, exact)


def test_seeded_and_deterministic():
    x, y, _ = _planted(5, n=60)
    first, second = match_unpaired(x, y, seed=7), match_unpaired(x, y, seed=7)
    np.testing.assert_array_equal(first.y_rows, second.y_rows)
    assert first.kernel_alignment == second.kernel_alignment
    a = match_significance(x, y, first, nulls=4, seed=1)
    b = match_significance(x, y, first, nulls=4, seed=1)
    np.testing.assert_array_equal(a.null_alignment, b.null_alignment)
    np.testing.assert_array_equal(a.null_stability, b.null_stability)


def test_unequal_sizes_match_a_sample_of_each_side():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(40, 8)), rng.normal(size=(70, 6))
    matching = match_unpaired(x, y, sample=30, refine_rounds=2)
    assert len(matching.x_rows) == len(matching.y_rows) == 30
    assert len(set(matching.x_rows)) == 30 and len(set(matching.y_rows)) == 30
    assert matching.y_rows.max() < 70
    assert matching.rotation.shape == (6, 6)  # k = min(n_components, d_x, d_y, s - 1)
    assert set(matching.y_rows) == set(matching.start_y_rows)  # refinement re-pairs the sample


def test_centred_kernel_is_centred_with_zero_diagonal():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(12, 5))
    kernel = centred_kernel(a + 3.0)
    np.testing.assert_allclose(np.diag(kernel), 0.0)
    np.testing.assert_allclose(kernel, centred_kernel(a), atol=1e-12)  # shifts do not matter
    centred = a - a.mean(axis=0)
    expected = centred @ centred.T
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(kernel, expected, atol=1e-12)


# --- validation -----------------------------------------------------------------------------


def test_rejects_bad_inputs():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 5))
    with pytest.raises(ValueError, match="at least 10"):
        match_unpaired(x[:5], y)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        match_unpaired(bad, y)
    with pytest.raises(ValueError, match="2-D"):
        match_unpaired(x[:, 0], y)
    with pytest.raises(ValueError, match="restarts"):
        match_unpaired(x, y, restarts=0)
    with pytest.raises(ValueError, match="sample"):
        match_unpaired(x, y, sample=3)
    with pytest.raises(ValueError, match="same number of rows"):
        kernel_match(x, y[:20])
    with pytest.raises(ValueError, match="one-to-one"):
        fit_matched_map(x, y, np.arange(12), np.r_[np.arange(11), 0])
    with pytest.raises(ValueError, match="row numbers"):
        fit_matched_map(x, y, np.arange(12), np.arange(20, 32))


def test_rejects_bad_significance_arguments_and_transforms():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 5))
    matching = match_unpaired(x, y, refine_rounds=1)
    with pytest.raises(ValueError, match="alpha"):
        match_significance(x, y, matching, alpha=1.5)
    with pytest.raises(ValueError, match="probes"):
        match_significance(x, y, matching, probes=0)
    with pytest.raises(ValueError, match="null_components"):
        match_significance(x, y, matching, null_components=20)
    with pytest.raises(ValueError, match="not fitted on these"):
        match_significance(x[:10], y, matching)
    with pytest.raises(ValueError, match="dimension 5"):
        matching.transform_x(y)
    with pytest.raises(ValueError, match="dimension 4"):
        matching.transform_y(x)
