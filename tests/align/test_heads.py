"""Trained projection heads: shapes, gMLP gate at init, overfitting a planted set, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.align import Aligner, CCAAligner
from xmodal.align.heads import GMLPHead, HeadAligner, SpatialGatingUnit
from xmodal.evaluate import evaluate_bidirectional


def planted(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Two views of n items: text and image are different random maps of one latent code."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 16))
    return {
        "text": (latent @ rng.normal(size=(16, 24)) + 0.05 * rng.normal(size=(n, 24))).astype(np.float32),
        "image": (np.tanh(latent @ rng.normal(size=(16, 40))) + 0.05 * rng.normal(size=(n, 40))).astype(np.float32),
    }


def test_gmlp_shapes_and_gate_starts_as_identity():
    torch.manual_seed(0)
    head = GMLPHead(d_in=40, d_out=12, tokens=4, width=8, depth=2, dropout=0.0)
    assert head(torch.randn(5, 40)).shape == (5, 12)
    gate = SpatialGatingUnit(channels=6, tokens=4)
    x = torch.randn(3, 4, 12)
    np.testing.assert_allclose(gate(x).detach().numpy(), x[..., :6].numpy(), atol=1e-6)


@pytest.mark.parametrize("head", ["linear", "mlp", "gmlp"])
@pytest.mark.parametrize("objective", ["pcmc", "pcmr"])
def test_heads_overfit_a_planted_dataset(head, objective):
    data = planted()
    labels = np.arange(64)
    aligner = HeadAligner(
        head=head,
        objective=objective,
        dim=16,
        hidden=64,
        tokens=4,
        width=8,
        epochs=300,
        batch_size=64,
        lr=3e-3,
        weight_decay=0.0,
        dropout=0.0,
        patience=300,
        negative_target=-0.2,
        validation_fraction=0.0,
    )
    aligner.fit(data)
    text, image = aligner.transform(data["text"], "text"), aligner.transform(data["image"], "image")
    assert text.shape == image.shape == (64, 16)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    metrics = evaluate_bidirectional(text, image, labels, labels)
    assert metrics["t2i/R@1"] == 100.0 and metrics["i2t/R@1"] == 100.0


def test_same_seed_same_numbers_and_save_load(tmp_path):
    data = planted(seed=1)
    make = lambda seed: HeadAligner(head="mlp", dim=8, hidden=32, epochs=20, batch_size=16, seed=seed).fit(data)  # noqa: E731
    first, second, other = make(0), make(0), make(1)
    np.testing.assert_array_equal(first.transform(data["text"], "text"), second.transform(data["text"], "text"))
    assert not np.array_equal(first.transform(data["text"], "text"), other.transform(data["text"], "text"))
    loaded = Aligner.load(first.save(tmp_path / "head.npz"))
    np.testing.assert_array_equal(loaded.transform(data["image"], "image"), first.transform(data["image"], "image"))
    assert len(loaded.loss_history_) == len(first.loss_history_)


def test_cca_init_starts_at_the_cca_solution():
    data = planted(n=200)
    head = HeadAligner(head="mlp", init="cca", dim=8, hidden=16, epochs=0, validation_fraction=0.0).fit(data)
    cca = CCAAligner(n_components=8, reg=1.0, weight_power=0.5).fit(data)
    for m, x in data.items():
        expected = cca.transform(x, m)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        np.testing.assert_allclose(head.transform(x, m), expected, atol=1e-4)


def test_groups_keep_one_row_per_group_per_batch_and_validation_stops_early():
    data = planted(n=60)
    rows = np.repeat(np.arange(20), 3)  # 3 rows per group, as captions of one image
    paired = {m: x[rows] for m, x in data.items()}
    validation = {m: x[:20] for m, x in data.items()}
    aligner = HeadAligner(dim=8, epochs=200, patience=3, batch_size=20, lr=0.05).fit(
        paired, groups=rows, validation=validation
    )
    assert len(aligner.loss_history_) < 200  # stopped on the validation loss


@pytest.mark.parametrize(
    "kwargs, fit_kwargs, message",
    [
        ({"head": "transformer"}, {}, "unknown head 'transformer'"),
        ({"objective": "triplet"}, {}, "unknown objective 'triplet'"),
        ({"init": "magic"}, {}, "unknown init 'magic'"),
        ({}, {"groups": np.zeros(3)}, r"groups must have one entry per row \(64\)"),
        ({}, {"validation": {"text": np.zeros((2, 24))}}, "validation modalities"),
        ({"temperature": 0.0}, {}, r"temperature must be in \(0, 1\]"),
    ],
)
def test_bad_settings_are_named(kwargs, fit_kwargs, message):
    with pytest.raises(ValueError, match=message):
        HeadAligner(epochs=1, **kwargs).fit(planted(), **fit_kwargs)


def test_absent_modality_values_are_ignored_and_three_modalities_align():
    """Rows marked absent may hold anything: training ignores them (same numbers with noise)."""
    rng = np.random.default_rng(3)
    data = planted(n=96, seed=3)
    data["audio"] = (data["text"] @ rng.normal(size=(24, 12))).astype(np.float32)
    present = {"audio": np.arange(96) % 3 != 0}  # a third of the items miss audio
    noisy = {**data, "audio": np.where(present["audio"][:, None], data["audio"], rng.normal(size=(96, 12)) * 50)}

    def make(d):
        return HeadAligner(
            dim=16,
            epochs=150,
            batch_size=96,
            lr=3e-3,
            weight_decay=0.0,
            dropout=0.0,
            patience=150,
            validation_fraction=0.0,
        ).fit(d, present=present)

    clean, dirty = make(data), make(noisy)
    np.testing.assert_allclose(
        clean.transform(data["audio"], "audio"), dirty.transform(data["audio"], "audio"), atol=1e-5
    )
    labels = np.arange(96)
    shared = {m: clean.transform(x, m) for m, x in data.items()}
    for q, g in [("audio", "image"), ("image", "audio"), ("text", "image")]:
        rows = present["audio"] if "audio" in (q, g) else np.ones(96, bool)
        metrics = evaluate_bidirectional(shared[q][rows], shared[g][rows], labels[rows], labels[rows])
        assert metrics["t2i/R@1"] >= 95.0, (q, g, metrics)


def test_present_must_be_one_bool_per_row():
    data = planted(n=20)
    with pytest.raises(ValueError, match=r"present\['image'\] must be a bool array of shape \(20,\)"):
        HeadAligner(epochs=1).fit(data, present={"image": np.ones(19, bool)})
    with pytest.raises(ValueError, match="modalities that were not given"):
        HeadAligner(epochs=1).fit(data, present={"audio": np.ones(20, bool)})


def test_without_validation_a_seeded_share_of_groups_is_held_out():
    """No validation given: 10 % of the groups stop training early, the same ones for one seed;
    with ``validation_fraction=0`` the training loss is monitored instead."""
    data = planted(n=80, seed=2)
    groups = np.repeat(np.arange(40), 2)
    fit = lambda **kw: HeadAligner(dim=8, epochs=40, patience=2, batch_size=20, lr=0.05, **kw).fit(data, groups=groups)  # noqa: E731
    first, again = fit(), fit()
    np.testing.assert_array_equal(first.loss_history_, again.loss_history_)
    assert len(first.loss_history_) < 40  # stopped early on the held-out groups
    other_seed = fit(seed=1)
    assert not np.array_equal(first.loss_history_, other_seed.loss_history_)
    unmonitored = fit(validation_fraction=0.0)
    assert not np.array_equal(first.loss_history_[:3], unmonitored.loss_history_[:3])


def test_views_join_the_groups_of_their_rows():
    """A view of every row (here: the rows themselves) trains as more rows of the same groups:
    fitting on [data, view] with views equals fitting on the concatenation with repeated groups."""
    data = planted(n=40, seed=4)
    view = {m: x + 0.01 for m, x in data.items()}
    groups = np.arange(40)
    make = lambda: HeadAligner(dim=8, epochs=5, batch_size=16, validation_fraction=0.0)  # noqa: E731
    with_views = make().fit(data, groups=groups, views=[view])
    stacked = make().fit({m: np.concatenate([data[m], view[m]]) for m in data}, groups=np.tile(groups, 2))
    np.testing.assert_array_equal(with_views.transform(data["text"], "text"), stacked.transform(data["text"], "text"))
