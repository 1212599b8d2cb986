"""The checks every layer shares: embeddings, integers, unit rows."""

import numpy as np
import pytest

from xmodal.core.arrays import check_embeddings, check_int, unit_rows


def test_check_embeddings_returns_float32_c_contiguous():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    out = check_embeddings(x, "text embeddings")
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x)


def test_check_embeddings_rejects_wrong_ndim():
    with pytest.raises(ValueError, match=r"text embeddings must be a 2-D array, got shape \(3,\)"):
        check_embeddings(np.zeros(3), "text embeddings")


def test_check_embeddings_rejects_empty():
    with pytest.raises(ValueError, match=r"image embeddings is empty"):
        check_embeddings(np.zeros((0, 8)), "image embeddings")


def test_check_embeddings_rejects_non_numeric():
    with pytest.raises(ValueError, match="text embeddings must hold real numbers"):
        check_embeddings(np.array([["a", "b"]]), "text embeddings")


def test_check_embeddings_reports_nonfinite_rows():
    x = np.ones((30, 4))
    x[17, 2] = np.nan
    x[25, 0] = np.inf
    with pytest.raises(ValueError, match=r"image embeddings contain NaN or inf in 2 rows \(first: row 17\)"):
        check_embeddings(x, "image embeddings")


def test_check_embeddings_float32_overflow_counts_as_inf():
    x = np.ones((2, 3))
    x[1, 1] = 1e300
    with pytest.raises(ValueError, match=r"in 1 row \(first: row 1\)"):
        check_embeddings(x, "queries")


@pytest.mark.parametrize("bad", [1.0, True, "2", None])
def test_check_int_refuses_non_integers(bad):
    with pytest.raises(ValueError, match="k must be an integer"):
        check_int(bad, "k", minimum=1)


def test_check_int_bounds_and_numpy_integers():
    assert check_int(np.int64(3), "k", minimum=1) == 3 and type(check_int(np.int64(3), "k", 1)) is int
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        check_int(0, "k", minimum=1)


def test_unit_rows_by_hand_and_zero_rows_stay_zero():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]], np.float32)
    np.testing.assert_allclose(unit_rows(x), [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])
    assert unit_rows(x).dtype == np.float32
