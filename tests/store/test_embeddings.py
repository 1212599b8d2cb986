"""N-modality embeddings: slots that pair values of one item, training tables with masks."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.store import ModalityEmbeddings


@pytest.fixture
def embeddings() -> ModalityEmbeddings:
    """4 items: item 0 has 3 captions and 1 translation, item 1 only captions, item 2 both,
    item 3 nothing. Rows of ``tr`` are stored out of item order on purpose."""
    return ModalityEmbeddings(
        arrays={"cap": np.arange(5.0)[:, None] * [1, 1], "tr": np.array([[12.0, 12], [10, 10], [11, 11]])},
        items={"cap": np.array([0, 0, 0, 1, 2]), "tr": np.array([2, 0, 2])},
        n_items=4,
    )


def test_slot_rows_pair_the_jth_values_and_cycle_the_shorter_modality(embeddings):
    item_of_row, rows = embeddings.slot_rows(["cap", "tr"])
    np.testing.assert_array_equal(item_of_row, [0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(rows["cap"], [0, 1, 2, 3, 4, 4])
    np.testing.assert_array_equal(rows["tr"], [1, 1, 1, -1, 0, 2])  # item 2: both its rows


def test_training_table_masks_absent_values_and_skips_single_modality_items(embeddings):
    arrays, present, groups = embeddings.training_table()
    np.testing.assert_array_equal(groups, [0, 0, 0, 2, 2])  # item 1 has one modality only
    assert present["cap"].all() and present["tr"].all()
    np.testing.assert_array_equal(arrays["tr"][:, 0], [10, 10, 10, 12, 11])
    embeddings.arrays["img"] = np.array([[7.0, 7], [8, 8], [9, 9]])
    embeddings.items["img"] = np.array([0, 1, 2])
    arrays, present, groups = embeddings.training_table()
    np.testing.assert_array_equal(groups, [0, 0, 0, 1, 2, 2])  # item 1 now has cap + img
    np.testing.assert_array_equal(present["tr"], [True, True, True, False, True, True])
    np.testing.assert_array_equal(arrays["tr"][3], [0, 0])  # the absent value is a zero row
    np.testing.assert_array_equal(arrays["img"][:, 0], [7, 7, 7, 8, 9, 9])


def test_complete_items_and_first_values(embeddings):
    np.testing.assert_array_equal(embeddings.complete_items(), [0, 2])
    first = embeddings.first_values()
    np.testing.assert_array_equal(first["cap"][:, 0], [0, 4])
    np.testing.assert_array_equal(first["tr"][:, 0], [10, 12])


def test_unknown_modality_is_named(embeddings):
    with pytest.raises(ValueError, match="no embeddings for modality 'audio'; have cap, tr"):
        embeddings.slot_rows(["cap", "audio"])


def test_without_pairs_leaves_no_item_with_both_and_loses_nothing_else():
    rng = np.random.default_rng(0)
    n = 101
    items = {"audio": np.arange(n), "text": np.repeat(np.arange(n), 2), "image": np.arange(0, n, 2)}
    arrays = {m: rng.normal(size=(len(i), 3)) for m, i in items.items()}
    before = ModalityEmbeddings(arrays, items, n)
    after = before.without_pairs("audio", "text", seed=3)
    assert len(after.complete_items(["audio", "text"])) == 0
    has = {m: np.isin(np.arange(n), after.items[m]) for m in ("audio", "text")}
    assert (has["audio"] | has["text"]).all()  # every item keeps one of the two
    assert has["audio"].sum() == 51 and has["text"].sum() == 50  # a half each (101 // 2 lose audio)
    np.testing.assert_array_equal(after.arrays["image"], before.arrays["image"])
    kept = np.isin(before.items["text"], after.items["text"])
    np.testing.assert_array_equal(after.arrays["text"], before.arrays["text"][kept])  # rows unchanged, in order
    again = before.without_pairs("audio", "text", seed=3)
    np.testing.assert_array_equal(again.items["audio"], after.items["audio"])  # seeded
    assert not np.array_equal(before.without_pairs("audio", "text", seed=4).items["audio"], after.items["audio"])
    with pytest.raises(ValueError, match="no embeddings for modality 'speech'"):
        before.without_pairs("speech", "text")
