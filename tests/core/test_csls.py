import numpy as np
import pytest

from xmodal.core.csls import column_top_k_mean, csls, top_k_mean


def test_top_k_means_of_rows_and_of_streamed_columns():
    scores = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    expected_rows = np.sort(scores, axis=1)[:, -3:].mean(1)
    np.testing.assert_allclose(top_k_mean(scores, 3), expected_rows, rtol=1e-6)
    np.testing.assert_allclose(top_k_mean(scores, 99), scores.mean(1), rtol=1e-6)  # k clipped to the row
    blocks = [scores[:2], scores[2:3], scores[3:]]
    np.testing.assert_allclose(column_top_k_mean(blocks, 3), np.sort(scores, axis=0)[-3:].mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="at least one block"):
        column_top_k_mean([], 3)


def test_csls_demotes_a_hub():
    # gallery item 0 is every query's nearest neighbour by cosine, but only query 0's by CSLS
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.75, 0.1], [0.8, 0.1, 0.75]], dtype=np.float32)
    assert (scores.argmax(1) == 0).all()
    corrected = csls(scores, top_k_mean(scores, 1), top_k_mean(scores.T, 1))
    np.testing.assert_allclose(corrected, 2 * scores - scores.max(1)[:, None] - scores.max(0)[None, :])
    assert corrected.argmax(1).tolist() == [0, 1, 2]
