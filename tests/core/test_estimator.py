"""The estimator base: scikit-learn's parameter protocol and the one .npz file format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid

from xmodal.align import Aligner, CCAAligner, LeastSquaresAligner
from xmodal.align.heads import HeadAligner
from xmodal.align.lit import LiTTuner
from xmodal.core.estimator import Estimator, NotFittedError, read_header
from xmodal.retrieval.learned import LearnedSimilarity

ESTIMATORS = [
    CCAAligner(n_components=4, reg=0.5),
    LeastSquaresAligner("image", "text", ridge=3.0),
    HeadAligner(head="mlp", dim=8, epochs=2),
    LearnedSimilarity("bilinear", rank=4),
    LiTTuner(trainable_layers=2),
]


def _pair(n: int = 80, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 6))
    return {"text": latent @ rng.normal(size=(6, 10)), "image": latent @ rng.normal(size=(6, 14))}


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_sklearn_clone_and_set_params(estimator):
    copy = clone(estimator)
    assert type(copy) is type(estimator) and copy is not estimator
    assert copy.get_params() == estimator.get_params()
    first = next(iter(estimator.get_params()))
    assert copy.set_params(**{first: estimator.get_params()[first]}) is copy
    with pytest.raises(ValueError, match=f"{type(estimator).__name__} has no parameter 'colour'"):
        copy.set_params(colour="red")


def test_a_parameter_grid_of_fresh_estimators():
    """scikit-learn's model-selection helpers drive xmodal estimators: a grid over CCA."""
    data = _pair()
    fitted = [
        clone(CCAAligner()).set_params(**params).fit(data)
        for params in ParameterGrid({"n_components": [2, 4], "reg": [0.1, 1.0]})
    ]
    assert sorted((a.n_components, a.reg) for a in fitted) == [(2, 0.1), (2, 1.0), (4, 0.1), (4, 1.0)]
    assert {a.transform(data["text"], "text").shape[1] for a in fitted} == {2, 4}


def test_an_init_with_varargs_is_refused():
    class Loose(Estimator):
        def __init__(self, **kwargs: object):
            pass

    with pytest.raises(TypeError, match="must name every hyper-parameter"):
        Loose().get_params()


def test_save_writes_json_params_and_arrays_without_pickle(tmp_path):
    head = HeadAligner(dim=8, epochs=3, batch_size=16).fit(_pair())
    path = head.save(tmp_path / "head", note={"why": "test"})
    assert path.name == "head.npz" and not list(tmp_path.glob(".*"))  # no temporary file left
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
        assert {"state/weights_/text.weight", "state/logit_scale_", "state/loss_history_"} <= set(archive.files)
    header = read_header(path)
    assert (
        header["class"] == "HeadAligner" and header["params"] == head.get_params() and header["note"] == {"why": "test"}
    )
    assert header["attributes"] == {"modalities_": ["text", "image"], "dims_": {"text": 10, "image": 14}}
    loaded = Aligner.load(path)
    assert loaded.modalities_ == ("text", "image")
    np.testing.assert_array_equal(
        loaded.transform(_pair()["image"], "image"), head.transform(_pair()["image"], "image")
    )


def test_load_refuses_another_kind_of_estimator(tmp_path):
    path = LearnedSimilarity("bilinear", rank=2, epochs=1).fit(*_pair().values()).save(tmp_path / "sim.npz")
    with pytest.raises(ValueError, match="holds LearnedSimilarity, not Aligner"):
        Aligner.load(path)


def test_an_aligner_file_of_the_first_format_still_loads(tmp_path):
    """Files written before the shared format: modalities and dims at the top of the header."""
    data = _pair()
    cca = CCAAligner(n_components=4).fit(data)
    state = {
        f"state/{k}" + (f"/{m}" if m else ""): v
        for k, vs in cca._learned().items()
        if k not in ("modalities_", "dims_")
        for m, v in (vs.items() if isinstance(vs, dict) else [("", vs)])
    }
    header = {
        "class": "CCAAligner",
        "params": cca.get_params(),
        "modalities": ["text", "image"],
        "dims": {"text": 10, "image": 14},
    }
    np.savez(tmp_path / "old.npz", header=np.array(json.dumps(header)), **state)
    old = Aligner.load(tmp_path / "old.npz")
    for m, x in data.items():
        np.testing.assert_array_equal(old.transform(x, m), cca.transform(x, m))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"id,text\nx,a caption\n", "is not a valid xmodal file"),
        (b"PK\x03\x04 truncated zip", "is not a valid xmodal file"),
    ],
)
def test_a_file_that_is_not_an_estimator_is_named(tmp_path, content, message):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        Aligner.load(path)
    assert str(path) in str(info.value) and "allow_pickle" not in str(info.value)


def test_a_truncated_file_is_named(tmp_path):
    path = CCAAligner(n_components=4).fit(_pair()).save(tmp_path / "cca.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="is not a valid xmodal file"):
        Aligner.load(path)


def test_unfitted_estimators_refuse_to_save(tmp_path):
    for estimator in ESTIMATORS:
        assert not estimator.is_fitted
        with pytest.raises(NotFittedError, match="not fitted yet"):
            estimator.save(tmp_path / "x.npz")


def _tampered(tmp_path, change) -> str:
    rng = np.random.default_rng(0)
    path = (
        CCAAligner(n_components=2)
        .fit({"a": rng.normal(size=(20, 3)), "b": rng.normal(size=(20, 3))})
        .save(tmp_path / "cca.npz")
    )
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(str(arrays["header"]))
    header.pop("sha256")  # a crafted file would not keep a checksum that gives it away
    change(header, arrays)
    arrays["header"] = np.array(json.dumps(header))
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, a: h["params"].update(shell="rm -rf /"), "parameters that CCAAligner does not take"),
        (lambda h, a: h["attributes"].update(__class__="Aligner"), "'__class__' is not learned state"),
        (lambda h, a: a.update({"state/transform": np.zeros(2)}), "'transform' is not learned state"),
        (lambda h, a: h.pop("params"), "its header lacks params or attributes"),
    ],
)
def test_a_crafted_file_is_refused_by_name(tmp_path, change, message):
    path = _tampered(tmp_path, change)
    with pytest.raises(ValueError, match=message):
        Aligner.load(path)


def test_changed_arrays_fail_the_header_checksum(tmp_path):
    path = _tampered(tmp_path, lambda h, a: None)
    saved = CCAAligner(n_components=2).fit({"a": np.eye(20, 3), "b": np.eye(20, 3)[::-1]}).save(tmp_path / "ok.npz")
    assert Aligner.load(saved).is_fitted and Aligner.load(path).is_fitted  # no checksum: accepted as before
    with np.load(saved) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["state/correlations_"] = arrays["state/correlations_"] + 1.0
    np.savez(saved, **arrays)
    with pytest.raises(ValueError, match="is corrupt: its arrays do not match the checksum in its header"):
        Aligner.load(saved)
