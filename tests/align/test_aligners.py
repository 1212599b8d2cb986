"""Known-answer tests for the closed-form aligners, their file format and the presets."""

import json

import numpy as np
import pytest

from xmodal.align import (
    Aligner,
    CCAAligner,
    IdentityAligner,
    LeastSquaresAligner,
    NotFittedError,
    ProcrustesAligner,
)
from xmodal.align.presets import ALIGNERS, make_aligner
from xmodal.evaluate import evaluate_bidirectional

D_TEXT, D_IMAGE = 40, 60
N_TRAIN, N_TEST = 400, 150


def _orthonormal_rows(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A ``rows x cols`` matrix with orthonormal rows (rows <= cols), from QR."""
    q, _ = np.linalg.qr(rng.normal(size=(cols, rows)))
    return q.T


def _split(text: np.ndarray, image: np.ndarray):
    train = {"text": text[:N_TRAIN], "image": image[:N_TRAIN]}
    test = {"text": text[N_TRAIN:], "image": image[N_TRAIN:]}
    return train, test


def linear_pair(seed: int = 0, noise: float = 1e-4):
    """text: anisotropic 40-d (+ offset); image = text @ M (40 x 60, full row rank) + noise."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    text = rng.normal(size=(n, D_TEXT)) * np.linspace(0.5, 2.0, D_TEXT) + rng.normal(size=D_TEXT)
    image = text @ rng.normal(size=(D_TEXT, D_IMAGE)) + noise * rng.normal(size=(n, D_IMAGE))
    return _split(text, image)


def rotation_pair(seed: int = 1, scale: float = 1.0, noise: float = 1e-4):
    """image = scale * text @ R (R 40 x 60, orthonormal rows) + noise; text anisotropic."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    text = rng.normal(size=(n, D_TEXT)) * np.linspace(0.5, 2.0, D_TEXT) + rng.normal(size=D_TEXT)
    rotation = _orthonormal_rows(rng, D_TEXT, D_IMAGE)
    image = scale * text @ rotation + noise * rng.normal(size=(n, D_IMAGE))
    return _split(text, image), rotation


def same_space_pair(seed: int = 2, noise: float = 1e-3):
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    text = rng.normal(size=(n, D_TEXT))
    return _split(text, text + noise * rng.normal(size=(n, D_TEXT)))


def assert_perfect_retrieval(aligner: Aligner, test: dict[str, np.ndarray]) -> None:
    t = aligner.transform(test["text"], "text")
    v = aligner.transform(test["image"], "image")
    assert t.dtype == np.float32 and v.dtype == np.float32
    # Plain numpy: each text's nearest image by cosine is its pair, and vice versa.
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    vn = v / np.linalg.norm(v, axis=1, keepdims=True)
    sims = tn @ vn.T
    idx = np.arange(len(t))
    np.testing.assert_array_equal(sims.argmax(axis=1), idx)
    np.testing.assert_array_equal(sims.argmax(axis=0), idx)
    metrics = evaluate_bidirectional(t, v, idx, idx, ks=(1,))
    assert metrics["t2i/R@1"] == 100.0
    assert metrics["i2t/R@1"] == 100.0


# --- planted data: perfect retrieval --------------------------------------------------------


@pytest.mark.parametrize("ridge", [0.0, 1e-6])
def test_least_squares_planted_map(ridge):
    train, test = linear_pair()
    aligner = LeastSquaresAligner("text", "image", ridge=ridge, normalize=False).fit(train)
    out = aligner.transform(test["text"], "text")
    assert out.shape == (N_TEST, D_IMAGE)
    # The map is recovered: mapped test text lands on the centred image.
    expected = test["image"] - train["image"].mean(axis=0)
    np.testing.assert_allclose(out, expected, atol=2e-3 * np.abs(expected).max())
    assert_perfect_retrieval(aligner, test)


def test_least_squares_reverse_direction():
    train, test = linear_pair()
    aligner = LeastSquaresAligner(source="image", target="text", ridge=0.0, normalize=False)
    aligner.fit(train)
    assert aligner.coef_.shape == (D_IMAGE, D_TEXT)
    assert aligner.transform(test["image"], "image").shape == (N_TEST, D_TEXT)
    assert aligner.transform(test["text"], "text").shape == (N_TEST, D_TEXT)
    assert_perfect_retrieval(aligner, test)


def test_least_squares_default_normalize_still_retrieves():
    train, test = linear_pair()
    assert_perfect_retrieval(LeastSquaresAligner(ridge=1e-6).fit(train), test)


def test_procrustes_planted_rotation():
    (train, test), rotation = rotation_pair()
    aligner = ProcrustesAligner("text", "image").fit(train)  # normalize=True keeps it exact
    assert aligner.rotation_.shape == (D_TEXT, D_IMAGE)
    np.testing.assert_allclose(aligner.rotation_, rotation, atol=1e-3)
    np.testing.assert_allclose(aligner.rotation_ @ aligner.rotation_.T, np.eye(D_TEXT), atol=1e-10)
    assert float(aligner.scale_) == 1.0
    assert aligner.transform(test["text"], "text").shape == (N_TEST, D_IMAGE)
    assert aligner.transform(test["image"], "image").shape == (N_TEST, D_IMAGE)
    assert_perfect_retrieval(aligner, test)


def test_procrustes_planted_rotation_with_scale():
    (train, test), rotation = rotation_pair(scale=3.5, noise=0.0)
    aligner = ProcrustesAligner("text", "image", scale=True, normalize=False).fit(train)
    np.testing.assert_allclose(aligner.rotation_, rotation, atol=1e-5)
    assert float(aligner.scale_) == pytest.approx(3.5, rel=1e-5)
    expected = test["image"] - train["image"].mean(axis=0)
    np.testing.assert_allclose(aligner.transform(test["text"], "text"), expected, atol=1e-4 * np.abs(expected).max())
    assert_perfect_retrieval(aligner, test)


def test_procrustes_reverse_direction():
    (train, test), rotation = rotation_pair()
    aligner = ProcrustesAligner(source="image", target="text", normalize=False).fit(train)
    assert aligner.rotation_.shape == (D_IMAGE, D_TEXT)
    np.testing.assert_allclose(aligner.rotation_, rotation.T, atol=1e-3)
    np.testing.assert_allclose(aligner.rotation_.T @ aligner.rotation_, np.eye(D_TEXT), atol=1e-10)
    assert aligner.transform(test["image"], "image").shape == (N_TEST, D_TEXT)
    assert aligner.transform(test["text"], "text").shape == (N_TEST, D_TEXT)
    assert_perfect_retrieval(aligner, test)


@pytest.mark.parametrize("k", [10, 40])
def test_procrustes_with_pca_components(k):
    (train, test), _ = rotation_pair()
    aligner = ProcrustesAligner("text", "image", n_components=k, normalize=False).fit(train)
    assert aligner.components_["text"].shape == (D_TEXT, k)
    assert aligner.components_["image"].shape == (D_IMAGE, k)
    # Both sides share dimension k, so the map is a true rotation.
    np.testing.assert_allclose(aligner.rotation_ @ aligner.rotation_.T, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(aligner.rotation_.T @ aligner.rotation_, np.eye(k), atol=1e-10)
    assert aligner.transform(test["text"], "text").shape == (N_TEST, k)
    assert aligner.transform(test["image"], "image").shape == (N_TEST, k)
    assert_perfect_retrieval(aligner, test)


@pytest.mark.parametrize("weight_power", [0.0, 1.0])
def test_cca_planted_linear_relation(weight_power):
    train, test = linear_pair(noise=1e-2)
    aligner = CCAAligner(n_components=20, weight_power=weight_power, normalize=False).fit(train)
    assert aligner.correlations_.shape == (20,)
    # image is an exact linear function of text up to small noise: correlations ~ 1.
    assert np.all(aligner.correlations_ > 0.99)
    assert aligner.transform(test["text"], "text").shape == (N_TEST, 20)
    assert aligner.transform(test["image"], "image").shape == (N_TEST, 20)
    assert_perfect_retrieval(aligner, test)


def test_cca_is_symmetric_in_modality_order():
    train, test = linear_pair(noise=1e-2)
    a = CCAAligner(n_components=10, normalize=False).fit(train)
    b = CCAAligner(n_components=10, normalize=False).fit({"image": train["image"], "text": train["text"]})
    # Aligners see float32 embeddings, so a^T b and b^T a agree to float32 precision.
    np.testing.assert_allclose(a.correlations_, b.correlations_, rtol=1e-5)
    assert_perfect_retrieval(b, test)


def test_truncated_cca_equals_a_narrower_fit():
    train, test = linear_pair(noise=0.5)
    wide = CCAAligner(n_components=20, reg=1.0, weight_power=0.5).fit(train)
    narrow = CCAAligner(n_components=8, reg=1.0, weight_power=1.0).fit(train)
    cut = wide.truncated(8, 1.0)
    assert cut.get_params() == narrow.get_params()
    for m in ("text", "image"):
        np.testing.assert_allclose(cut.transform(test[m], m), narrow.transform(test[m], m), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"n_components must be in \[1, 20\], got 21"):
        wide.truncated(21, 1.0)


def test_identity_aligner():
    train, test = same_space_pair()
    aligner = IdentityAligner(normalize=False).fit(train)
    np.testing.assert_array_equal(aligner.transform(test["text"], "text"), test["text"].astype(np.float32))
    assert_perfect_retrieval(aligner, test)
    normed = IdentityAligner().fit(train).transform(test["image"], "image")
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, rtol=1e-6)


def test_identity_aligner_rejects_three_modalities():
    train, _ = same_space_pair()
    with pytest.raises(ValueError, match=r"IdentityAligner aligns exactly 2 modalities, got 3"):
        IdentityAligner().fit({**train, "audio": train["text"]})


# --- save / load ---------------------------------------------------------------------------


def _fitted_aligners():
    train_lin, _ = linear_pair()
    (train_rot, _), _ = rotation_pair()
    train_same, _ = same_space_pair()
    return [
        (IdentityAligner(), train_same),
        (LeastSquaresAligner("image", "text", ridge=0.5, center=False), train_lin),
        (ProcrustesAligner("text", "image", scale=True), train_rot),
        (ProcrustesAligner("image", "text", n_components=12, normalize=False), train_rot),
        (CCAAligner(n_components=8, reg=1e-2, weight_power=0.5), train_lin),
    ]


@pytest.mark.parametrize("index", range(5))
def test_save_load_round_trip(tmp_path, index):
    aligner, train = _fitted_aligners()[index]
    aligner.fit(train)
    path = aligner.save(tmp_path / "sub" / "model")
    assert path == tmp_path / "sub" / "model.npz" and path.is_file()

    # A plain npz, readable without pickle.
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(str(archive["header"]))
        for name in archive.files:
            assert archive[name].dtype != object
    assert header["class"] == type(aligner).__name__
    assert header["params"] == aligner.get_params()

    loaded = Aligner.load(path)
    assert type(loaded) is type(aligner)
    assert repr(loaded) == repr(aligner)
    assert loaded.get_params() == aligner.get_params()
    assert loaded.modalities_ == aligner.modalities_
    assert loaded.dims_ == aligner.dims_
    rng = np.random.default_rng(3)
    for modality, x in train.items():
        fresh = rng.normal(size=(7, x.shape[1]))
        np.testing.assert_array_equal(loaded.transform(fresh, modality), aligner.transform(fresh, modality))
    # Saving the loaded aligner again gives the same arrays.
    again = Aligner.load(loaded.save(tmp_path / "again.npz"))
    for modality, x in train.items():
        np.testing.assert_array_equal(again.transform(x[:5], modality), aligner.transform(x[:5], modality))


def test_load_rejects_non_aligner_npz(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="is not an xmodal file"):
        Aligner.load(path)


def test_load_rejects_unknown_class(tmp_path):
    path = tmp_path / "unknown.npz"
    header = {"class": "NoSuchAligner", "params": {}, "modalities": ["a", "b"], "dims": {}}
    np.savez(path, header=np.array(json.dumps(header)))
    with pytest.raises(ValueError, match="unknown class 'NoSuchAligner'"):
        Aligner.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="file not found"):
        Aligner.load(tmp_path / "missing.npz")


def test_save_before_fit_raises(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        CCAAligner().save(tmp_path / "x.npz")


# --- errors --------------------------------------------------------------------------------


def _random_pair(n=50, d_text=8, d_image=12, seed=4):
    rng = np.random.default_rng(seed)
    return {"text": rng.normal(size=(n, d_text)), "image": rng.normal(size=(n, d_image))}


def test_fit_rejects_nan_naming_modality_and_row():
    data = _random_pair()
    data["image"][17, 3] = np.nan
    data["image"][30, 0] = np.inf
    with pytest.raises(ValueError, match=r"image embeddings contain NaN or inf in 2 rows \(first: row 17\)"):
        LeastSquaresAligner().fit(data)


def test_fit_rejects_different_row_counts():
    data = _random_pair()
    data["image"] = data["image"][:40]
    with pytest.raises(ValueError, match=r"same number of rows, got \{'text': 50, 'image': 40\}"):
        CCAAligner(n_components=4).fit(data)


def test_fit_rejects_wrong_number_of_modalities():
    data = _random_pair()
    with pytest.raises(ValueError, match="at least 2 modalities"):
        ProcrustesAligner().fit({"text": data["text"]})
    with pytest.raises(ValueError, match="at least 2 modalities"):
        ProcrustesAligner().fit([data["text"], data["image"]])
    with pytest.raises(ValueError, match=r"aligns exactly 2 modalities, got 3"):
        CCAAligner(n_components=4).fit({**data, "audio": data["text"]})


def test_fit_rejects_bad_shapes():
    data = _random_pair()
    data["text"] = data["text"][:, 0]
    with pytest.raises(ValueError, match="text embeddings must be a 2-D array"):
        LeastSquaresAligner().fit(data)


@pytest.mark.parametrize(
    "aligner",
    [IdentityAligner(), LeastSquaresAligner(), ProcrustesAligner(), CCAAligner()],
    ids=lambda a: type(a).__name__,
)
def test_transform_before_fit_raises(aligner):
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        aligner.transform(np.ones((2, 8)), "text")


def test_transform_unknown_modality_and_wrong_dimension():
    aligner = LeastSquaresAligner().fit(_random_pair())
    with pytest.raises(ValueError, match=r"fitted on modalities \['text', 'image'\], not 'audio'"):
        aligner.transform(np.ones((2, 8)), "audio")
    with pytest.raises(
        ValueError, match="text embeddings have dimension 9, but LeastSquaresAligner was fitted on dimension 8"
    ):
        aligner.transform(np.ones((2, 9)), "text")
    with pytest.raises(ValueError, match=r"image embeddings contain NaN or inf in 1 row \(first: row 1\)"):
        aligner.transform(np.array([[0.0] * 12, [np.nan] * 12]), "image")


def test_identity_rejects_unequal_dimensions():
    aligner = IdentityAligner()
    with pytest.raises(ValueError, match=r"equal dimension, got \{'text': 8, 'image': 12\}"):
        aligner.fit(_random_pair())
    # A failed fit leaves the aligner unfitted.
    with pytest.raises(NotFittedError):
        aligner.transform(np.ones((2, 8)), "text")


@pytest.mark.parametrize("cls", [LeastSquaresAligner, ProcrustesAligner])
def test_directed_aligner_rejects_unknown_source_or_target(cls):
    data = _random_pair()
    with pytest.raises(
        ValueError, match=r"source='caption', target='image'.*does not match the fitted modalities \['text', 'image'\]"
    ):
        cls(source="caption", target="image").fit(data)
    with pytest.raises(ValueError, match=r"source='text', target='photo'"):
        cls(source="text", target="photo").fit(data)
    with pytest.raises(ValueError, match="does not match the fitted modalities"):
        cls(source="text", target="text").fit(data)


def test_failed_refit_does_not_leave_stale_state():
    data = _random_pair()
    aligner = LeastSquaresAligner(source="text", target="image").fit(data)
    aligner.source = "caption"
    with pytest.raises(ValueError, match="does not match"):
        aligner.fit(data)
    with pytest.raises(NotFittedError):
        aligner.transform(data["text"], "text")


def test_n_components_too_large():
    data = _random_pair()
    with pytest.raises(ValueError, match=r"n_components must be in \[1, 8\] for data of shape \(50, 8\), got 9"):
        ProcrustesAligner(n_components=9).fit(data)
    with pytest.raises(ValueError, match=r"n_components must be in \[1, 8\], got 9"):
        CCAAligner(n_components=9).fit(data)
    with pytest.raises(ValueError, match=r"n_components must be in \[1, 8\], got 0"):
        CCAAligner(n_components=0).fit(data)


def test_negative_ridge_raises():
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        LeastSquaresAligner(ridge=-1.0).fit(_random_pair())


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: LeastSquaresAligner(ridge=0.1),
        lambda: ProcrustesAligner(scale=True),
        lambda: ProcrustesAligner(n_components=6),
        lambda: CCAAligner(n_components=6),
    ],
    ids=["lstsq", "procrustes", "procrustes-pca", "cca"],
)
def test_fit_is_deterministic(make):
    data = _random_pair(n=120)
    first, second = make().fit(data), make().fit(data)
    for name, value in first._learned().items():
        other = second._learned()[name]
        if isinstance(value, dict):
            assert value.keys() == other.keys()
            for key in value:
                np.testing.assert_array_equal(value[key], other[key])
        else:
            np.testing.assert_array_equal(value, other)
    for modality, x in data.items():
        np.testing.assert_array_equal(first.transform(x, modality), second.transform(x, modality))


# --- presets -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def preset_data():
    # Like 384-d text / 1280-d image embeddings, but smaller: just big enough for the
    # presets' n_components (256 for "procrustes-pca256", up to 384 for CCA).
    rng = np.random.default_rng(5)
    n, d_text, d_image = 400, 392, 448
    latent = rng.normal(size=(n, 32))
    return {
        "text": latent @ rng.normal(size=(32, d_text)) + rng.normal(size=(n, d_text)),
        "image": latent @ rng.normal(size=(32, d_image)) + rng.normal(size=(n, d_image)),
    }


@pytest.mark.parametrize("name", list(ALIGNERS))
def test_every_preset_builds_and_fits(name, preset_data):
    aligner = make_aligner(name)
    assert isinstance(aligner, Aligner)
    assert not hasattr(aligner, "modalities_")
    assert make_aligner(name) is not aligner  # a fresh instance each time
    if name == "identity":
        rng = np.random.default_rng(6)
        data = {"text": rng.normal(size=(50, 64)), "image": rng.normal(size=(50, 64))}
    else:
        data = preset_data
    aligner.fit(data)
    outs = {m: aligner.transform(x[:10], m) for m, x in data.items()}
    shapes = {out.shape for out in outs.values()}
    assert len(shapes) == 1  # both modalities land in one shared space
    assert all(np.isfinite(out).all() for out in outs.values())


def test_make_aligner_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown aligner 'nope'; known aligners: identity, lstsq-t2i") as info:
        make_aligner("nope")
    for name in ALIGNERS:
        assert name in str(info.value)


def test_presets_cover_every_head_and_objective():
    from xmodal.align.heads import HEADS, OBJECTIVES
    from xmodal.align.presets import HEAD_KINDS, TRAINED_ALIGNERS

    assert HEAD_KINDS == HEADS
    made = [make_aligner(name) for name in TRAINED_ALIGNERS]
    assert {(a.head, a.objective, a.init) for a in made} == {
        (h, o, i) for h in HEADS for o in OBJECTIVES for i in ("random", "cca")
    }


# --- one fit signature for every aligner ---------------------------------------------------


def test_closed_form_fit_takes_the_training_arguments_and_solves_on_complete_rows():
    """groups, validation and views are accepted (and checked) but change nothing for a
    closed-form solution; ``present`` keeps the rows that have every modality."""
    data = _random_pair(n=60)
    plain = CCAAligner(n_components=4).fit(data)
    same = CCAAligner(n_components=4).fit(
        data, groups=np.arange(60) // 3, validation={m: x[:5] for m, x in data.items()}, views=[data]
    )
    for m, x in data.items():
        np.testing.assert_array_equal(same.transform(x, m), plain.transform(x, m))
    present = {"text": np.arange(60) % 4 != 0}
    masked = CCAAligner(n_components=4).fit(data, present=present)
    complete = CCAAligner(n_components=4).fit({m: x[present["text"]] for m, x in data.items()})
    np.testing.assert_allclose(
        masked.transform(data["text"], "text"), complete.transform(data["text"], "text"), atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"groups": np.zeros(3)}, r"groups must have one entry per row \(60\)"),
        ({"validation": {"text": np.zeros((2, 8))}}, r"validation modalities \['text'\] differ"),
        (
            {"validation": {"text": np.zeros((2, 8)), "image": np.zeros((2, 7))}},
            "validation image embeddings have dimension 7, expected 12",
        ),
        (
            {"views": [{"text": np.zeros((59, 8)), "image": np.zeros((59, 12))}]},
            r"view 1 embeddings must be row-paired \(60, as the training rows\)",
        ),
        ({"present": {"audio": np.ones(60, bool)}}, "present names modalities that were not given"),
    ],
)
def test_training_arguments_are_checked_for_every_aligner(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CCAAligner(n_components=4).fit(_random_pair(n=60), **kwargs)


def test_identity_accepts_only_equal_dimensions():
    assert IdentityAligner().accepts({"text": 8, "image": 8})
    assert not IdentityAligner().accepts({"text": 8, "image": 12})
    assert CCAAligner().accepts({"text": 8, "image": 12})
