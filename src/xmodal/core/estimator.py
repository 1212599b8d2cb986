"""The estimator base class: scikit-learn's parameter conventions and one file format.

Every fitted object of xmodal (aligners, learned similarities, the LiT tuner) follows
scikit-learn: ``__init__`` stores its hyper-parameters under their own names and nothing
else; ``get_params`` / ``set_params`` read and write them, so ``sklearn.base.clone`` and
``sklearn.model_selection.ParameterGrid`` work; learned state lives in attributes whose
names end in ``_``.

One file format for all of them, ``.npz`` without pickle:

* ``header``: JSON ``{"format", "class", "params", "attributes", ...}``; ``attributes`` holds
  the learned state that is plain JSON (modality names, dimensions); writers may add
  sections of their own (a model's encoders, see :mod:`xmodal.model`);
* ``state/NAME``: each learned array, ``state/NAME/KEY`` for a dict of arrays;
* ``extra/NAME``: arrays a writer stores beside the state (a model's bridge, see
  :mod:`xmodal.model`), read back by :func:`read_extra`.

Aligner files written before this format (``modalities``/``dims`` in the header) still load.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from xmodal.core.files import atomic_path

FORMAT = "xmodal-estimator/1"
EXTRA = "extra/"  # the prefix of the arrays saved beside the state
E = TypeVar("E", bound="Estimator")


class NotFittedError(RuntimeError):
    """A fitted estimator was needed (``transform``, ``save``, ...) before ``fit``."""


class Estimator:
    """Base class: hyper-parameters from the ``__init__`` signature, persistence by ``save``/``load``."""

    _registry: ClassVar[dict[str, type[Estimator]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Estimator._registry[cls.__name__] = cls

    # -- parameters (scikit-learn's protocol) --------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        parameters = inspect.signature(cls.__init__).parameters.values()
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters):
            raise TypeError(f"{cls.__name__}.__init__ must name every hyper-parameter (no *args / **kwargs)")
        return [p.name for p in parameters if p.name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters, as passed to ``__init__`` (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: E, **params: Any) -> E:
        """Set hyper-parameters by name; an unknown name raises ``ValueError``. Returns self."""
        known = self._param_names()
        for name, value in params.items():
            if name not in known:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; parameters: {', '.join(known)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- fitted state ---------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` has run (some learned attribute exists)."""
        return bool(self._learned())

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() first")

    def _learned(self) -> dict[str, Any]:
        """Learned attributes: public names ending in ``_``."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def _forget(self) -> None:
        """Drop every learned attribute (after a failed fit, so nothing looks half-fitted)."""
        for name in self._learned():
            delattr(self, name)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path, *, extra: Mapping[str, np.ndarray] | None = None, **sections: Any) -> Path:
        """Write the fitted estimator to ``path`` (``.npz`` added if missing), atomically.

        ``sections`` are extra JSON entries of the header (read back by :func:`read_header`);
        ``extra`` are arrays stored beside the estimator's state (read back by :func:`read_extra`).
        """
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        arrays: dict[str, np.ndarray] = {f"{EXTRA}{name}": np.asarray(value) for name, value in (extra or {}).items()}
        attributes: dict[str, Any] = {}
        for name, value in self._learned().items():
            if isinstance(value, (np.ndarray, np.generic)):
                arrays[f"state/{name}"] = np.asarray(value)
            elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
                arrays.update({f"state/{name}/{key}": v for key, v in value.items()})
            else:
                attributes[name] = value
        header = {"format": FORMAT, "class": type(self).__name__, "params": self.get_params(), "attributes": attributes}
        text = json.dumps({**header, **sections, "sha256": _arrays_digest(arrays)})
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, header=np.array(text), **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        return path

    @classmethod
    def load(cls: type[E], path: str | Path) -> E:
        """Read an estimator written by :meth:`save`; it must be a ``cls`` (or a subclass)."""
        header, arrays, _ = _read(Path(path))
        found = Estimator._registry.get(str(header.get("class")))
        if found is None:
            raise ValueError(f"{path}: unknown class {header.get('class')!r}")
        if not issubclass(found, cls):
            raise ValueError(f"{path} holds {found.__name__}, not {cls.__name__}")
        params, attributes = header.get("params"), header.get("attributes")
        if not isinstance(params, dict) or not isinstance(attributes, dict):
            raise ValueError(f"{path} is not a valid xmodal file: its header lacks params or attributes")
        try:
            estimator = found(**params)
        except TypeError as error:  # parameters this class does not take
            raise ValueError(f"{path}: parameters that {found.__name__} does not take ({error})") from None
        for name, value in [*attributes.items(), *arrays.items()]:
            if not (name.endswith("_") and not name.startswith("_")):  # never a method or a dunder
                raise ValueError(f"{path}: {name!r} is not learned state of {found.__name__}")
            setattr(estimator, name, tuple(value) if isinstance(value, list) else value)
        return estimator


def _arrays_digest(arrays: dict[str, Any]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of an estimator file (its class, parameters and extra sections)."""
    return _read(Path(path), arrays=False)[0]


def read_extra(path: str | Path) -> dict[str, np.ndarray]:
    """The ``extra`` arrays an estimator file was saved with (:meth:`Estimator.save`), checked."""
    return _read(Path(path))[2]


def _read(path: Path, arrays: bool = True) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """``(header, learned arrays by attribute, extra arrays)`` of a file, legacy layouts converted."""
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    invalid = f"{path} is not a valid xmodal file (an .npz written by xmodal)"
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # numpy would suggest allow_pickle=True
        raise ValueError(invalid) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(invalid)
    with archive:
        if "header" not in archive:
            raise ValueError(f"{path} is not an xmodal file (no header)")
        try:
            header = json.loads(str(archive["header"]))
            flat = {k: archive[k] for k in archive.files if k != "header"} if arrays else {}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RecursionError) as error:
            raise ValueError(f"{invalid}: {error}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{invalid}: its header is not a JSON object")
    recorded = header.pop("sha256", None)  # absent from files written before checksums
    if arrays and recorded is not None and recorded != _arrays_digest(flat):
        raise ValueError(f"{path} is corrupt: its arrays do not match the checksum in its header")
    if "format" not in header:  # an aligner written before the shared format
        legacy = {"modalities": "modalities_", "dims": "dims_"}
        header["attributes"] = {new: header.pop(old) for old, new in legacy.items() if old in header}
    state: dict[str, Any] = {}
    extra = {key.removeprefix(EXTRA): flat.pop(key) for key in [k for k in flat if k.startswith(EXTRA)]}
    for key, value in flat.items():
        name, _, sub = key.removeprefix("state/").partition("/")
        if sub:
            state.setdefault(name, {})[sub] = value
        else:
            state[name] = value
    return header, state, extra
