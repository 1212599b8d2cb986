"""The Aligner interface (scikit-learn style) and its file format.

An aligner is fitted on row-paired embeddings, one array per modality, and maps any
modality's embeddings into a shared space where they can be compared::

    aligner = CCAAligner(n_components=128).fit({"text": t, "image": v})
    scores = aligner.transform(t_test, "text") @ aligner.transform(v_test, "image").T

Hyper-parameters live in ``__init__``; ``fit`` validates and returns ``self``; learned
state ends in ``_``. ``save`` writes one ``.npz`` file (no pickle): the class name,
the hyper-parameters as JSON, and every learned array.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from xmodal.similarity import check_embeddings, unit_rows

_REGISTRY: dict[str, type[Aligner]] = {}


class NotFittedError(RuntimeError):
    """``transform`` or ``save`` was called before ``fit``."""


class Aligner:
    """Base class: subclasses implement ``_fit(data)`` and ``_transform(x, modality)``.

    ``normalize=True`` L2-normalises every input row before anything else, which suits
    encoders trained for cosine similarity.
    """

    n_modalities: ClassVar[int | None] = 2  # None: any number >= 2

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    # -- public API -----------------------------------------------------------------
    def fit(self, embeddings: dict[str, np.ndarray], **fit_params: Any) -> Aligner:
        """Fit on row-paired embeddings ``{modality: array (n, d_modality)}``; returns self.

        ``fit_params`` go to the subclass (trained aligners take ``groups`` and ``validation``).
        """
        data = self._validate_fit_input(embeddings)
        self.modalities_ = tuple(data)
        self.dims_ = {m: x.shape[1] for m, x in data.items()}
        try:
            self._fit({m: self._preprocess(x) for m, x in data.items()}, **fit_params)
        except BaseException:
            # A failed fit must not leave the aligner looking fitted (half-set state).
            for name in [n for n in vars(self) if n.endswith("_")]:
                delattr(self, name)
            raise
        return self

    def transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        """Map ``x`` (``n x d_modality``) into the shared space; float32."""
        self._check_fitted()
        if modality not in self.modalities_:
            raise ValueError(
                f"{type(self).__name__} was fitted on modalities {list(self.modalities_)}, "
                f"not {modality!r}"
            )
        x = check_embeddings(x, f"{modality} embeddings")
        if x.shape[1] != self.dims_[modality]:
            raise ValueError(
                f"{modality} embeddings have dimension {x.shape[1]}, but "
                f"{type(self).__name__} was fitted on dimension {self.dims_[modality]}"
            )
        return np.ascontiguousarray(self._transform(self._preprocess(x), modality), np.float32)

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters, as passed to ``__init__``."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def save(self, path: str | Path) -> Path:
        """Write the fitted aligner to ``path`` (``.npz``, no pickle); returns the path."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "modalities": list(self.modalities_),
            "dims": self.dims_,
        }
        arrays = {f"state/{k}": v for k, v in _flatten_state(self._state()).items()}
        np.savez(path, header=np.array(json.dumps(header)), **arrays)
        return path

    @staticmethod
    def load(path: str | Path) -> Aligner:
        """Read an aligner written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"aligner file not found: {path}")
        with np.load(path, allow_pickle=False) as archive:
            if "header" not in archive:
                raise ValueError(f"{path} is not an xmodal aligner file (no header)")
            header = json.loads(str(archive["header"]))
            state = {k[len("state/") :]: archive[k] for k in archive.files if k.startswith("state/")}
        cls = _REGISTRY.get(header["class"])
        if cls is None:
            raise ValueError(f"{path}: unknown aligner class {header['class']!r}")
        aligner = cls(**header["params"])
        aligner.modalities_ = tuple(header["modalities"])
        aligner.dims_ = {m: int(d) for m, d in header["dims"].items()}
        for name, value in _unflatten_state(state).items():
            setattr(aligner, name, value)
        return aligner

    # -- for subclasses -----------------------------------------------------------------
    def _fit(self, data: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _transform(self, x: np.ndarray, modality: str) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> dict[str, np.ndarray | dict[str, np.ndarray]]:
        """Learned attributes (names ending in ``_``) other than modalities_ and dims_."""
        return {
            name: value
            for name, value in vars(self).items()
            if name.endswith("_") and name not in ("modalities_", "dims_")
        }

    # -- helpers ------------------------------------------------------------------------
    def _preprocess(self, x: np.ndarray) -> np.ndarray:
        """Rows L2-normalised if ``normalize``; float32 (validated by check_embeddings)."""
        if self.normalize:
            x = unit_rows(x)
        return x

    def _check_fitted(self) -> None:
        if not hasattr(self, "modalities_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() first")

    def _validate_fit_input(self, embeddings: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(embeddings, dict) or len(embeddings) < 2:
            raise ValueError("fit() takes a dict {modality: embeddings} with at least 2 modalities")
        if self.n_modalities is not None and len(embeddings) != self.n_modalities:
            raise ValueError(
                f"{type(self).__name__} aligns exactly {self.n_modalities} modalities, "
                f"got {len(embeddings)}: {list(embeddings)}"
            )
        data = {m: check_embeddings(x, f"{m} embeddings") for m, x in embeddings.items()}
        rows = {m: x.shape[0] for m, x in data.items()}
        if len(set(rows.values())) != 1:
            raise ValueError(f"paired embeddings need the same number of rows, got {rows}")
        return data


def _flatten_state(state: dict[str, Any]) -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if isinstance(value, dict):
            flat.update({f"{name}/{key}": np.asarray(v) for key, v in value.items()})
        else:
            flat[name] = np.asarray(value)
    return flat


def _unflatten_state(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key, value in flat.items():
        name, _, sub = key.partition("/")
        if sub:
            state.setdefault(name, {})[sub] = value
        else:
            state[name] = value
    return state
