"""The model: what ``xmodal fit`` writes and every other command reads.

A model is a fitted aligner plus what it takes to use it again: the encoder of each modality
(registry name, cache key, input dimension), the encoder backend, and the scoring settings
(similarity metric and CSLS neighbourhood), and optionally the training pairs as a bridge
for queries (:class:`~xmodal.retrieval.QueryBridge` by route, ``xmodal fit --bridge``). It is
one ``.npz`` file, the aligner's own (:meth:`~xmodal.core.estimator.Estimator.save`) with a
``model`` section in its header and the bridges' arrays beside the aligner's state, so
``Aligner.load`` still reads the aligner from it and an aligner file written before models
existed still loads as a model whose encoders are given by the caller.

Loading rebuilds the encoders by name and refuses one whose cache key changed (other
weights, preprocessing or backend): embeddings of another function would silently land in
the wrong place of the shared space.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import xmodal
from xmodal.align import Aligner
from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_CSLS_K, DEFAULT_ENCODERS, DEFAULT_METRIC
from xmodal.core.estimator import read_extra, read_header
from xmodal.encoders import Encoder, get_encoder
from xmodal.retrieval.calibration import Calibrator
from xmodal.retrieval.rerank import QueryBridge
from xmodal.retrieval.similarity import SIMILARITIES

FORMAT = "xmodal-model/1"


class EncoderMismatchError(ValueError):
    """The encoders asked for (or available now) differ from those a model was fitted on."""


@dataclass(frozen=True)
class EncoderRecord:
    """How one modality's embeddings were made: registry name, cache key (None: unknown, for
    an aligner file written before models existed) and embedding dimension."""

    name: str
    cache_key: str | None
    dim: int


@dataclass
class Model:
    """A fitted aligner with its encoders and scoring settings (see the module docstring)."""

    aligner: Aligner
    encoders: dict[str, EncoderRecord]
    backend: str = DEFAULT_BACKEND
    metric: str = DEFAULT_METRIC
    csls_k: int = DEFAULT_CSLS_K
    about: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # the file it was loaded from
    calibration: dict[str, Calibrator] = field(default_factory=dict)  # by :func:`route`
    bridges: dict[str, QueryBridge] = field(default_factory=dict)  # by :func:`route`

    def __post_init__(self) -> None:
        if self.metric not in SIMILARITIES:
            raise ValueError(f"unknown metric {self.metric!r}; known metrics: {', '.join(SIMILARITIES)}")
        if isinstance(self.csls_k, bool) or not isinstance(self.csls_k, int) or self.csls_k < 0:
            raise ValueError(f"csls_k must be an integer >= 0, got {self.csls_k!r}")
        missing = set(self.aligner.modalities_) - set(self.encoders)
        if missing:
            raise ValueError(f"no encoder given for modalities {sorted(missing)} of the aligner")

    @classmethod
    def from_encoders(cls, aligner: Aligner, encoders: Mapping[str, Encoder], **settings: Any) -> Model:
        """The model of ``aligner`` fitted on embeddings of ``encoders`` (``{modality: encoder}``)."""
        records = {m: EncoderRecord(e.name, e.cache_key, aligner.dims_[m]) for m, e in encoders.items()}
        return cls(aligner, records, **settings)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.aligner.modalities_)

    def encoder_names(self) -> dict[str, str]:
        return {m: r.name for m, r in self.encoders.items()}

    def build_encoders(self, models_dir: str | Path | None = None) -> dict[str, Encoder]:
        """The encoder of every modality, rebuilt by name; raises :class:`EncoderMismatchError`
        when one no longer computes what the model was fitted on (its cache key changed)."""
        built = {}
        for modality, record in self.encoders.items():
            encoder = get_encoder(record.name, backend=self.backend, models_dir=models_dir)
            if record.cache_key is not None and encoder.cache_key != record.cache_key:
                raise EncoderMismatchError(
                    f"{self._source()}: {modality} encoder {record.name!r} is now {encoder.cache_key!r}, but the "
                    f"model was fitted with {record.cache_key!r} (other weights, preprocessing or backend); "
                    "fit the model again"
                )
            built[modality] = encoder
        return built

    def transform(self, x: Any, modality: str) -> Any:
        """``x`` (embeddings of ``modality``'s encoder) in the shared space."""
        return self.aligner.transform(x, modality)

    def transform_queries(self, x: Any, modality: str, gallery: str) -> Any:
        """``x`` in the shared space as queries of a ``gallery`` modality: rewritten by the
        model's bridge of that route, when it has one."""
        shared = self.aligner.transform(x, modality)
        bridge = self.bridges.get(route(modality, gallery))
        return shared if bridge is None else bridge.transform(shared)

    def header(self) -> dict[str, Any]:
        """The ``model`` section of the file."""
        section = {
            "format": FORMAT,
            "encoders": {m: {"name": r.name, "cache_key": r.cache_key, "dim": r.dim} for m, r in self.encoders.items()},
            "backend": self.backend,
            "scoring": {"metric": self.metric, "csls_k": self.csls_k},
            "about": self.about,
        }
        if self.calibration:
            section["calibration"] = {key: c.to_json() for key, c in self.calibration.items()}
        if self.bridges:
            section["bridges"] = {key: b.get_params() for key, b in self.bridges.items()}
        return section

    def save(self, path: str | Path) -> Path:
        """Write the model (one ``.npz`` file, atomically); returns its path."""
        section = self.header()
        section["about"] = {**self.about, "saved": time.strftime("%Y-%m-%dT%H:%M:%S"), "xmodal": xmodal.__version__}
        return self.aligner.save(path, extra=_bridge_arrays(self.bridges), model=section)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoders: Mapping[str, str | None] | None = None,
        backend: str | None = None,
        csls_k: int | None = None,
    ) -> Model:
        """Read a model written by :meth:`save`, or a bare aligner file (then ``encoders`` name
        the encoders, default: the configured defaults).

        ``encoders`` (``{modality: name or None}``) and ``backend``, when given for a model, must
        agree with it: a contradiction raises :class:`EncoderMismatchError` naming both. ``csls_k``
        overrides the scoring setting.
        """
        path = Path(path)
        header = read_header(path)
        aligner = Aligner.load(path)
        asked = {m: name for m, name in (encoders or {}).items() if name is not None}
        section = header.get("model")
        if section is None:  # an aligner file from before models: the caller names the encoders
            unknown = set(asked) - set(aligner.modalities_)
            if unknown:
                raise ValueError(f"{path}: the aligner has no modality {sorted(unknown)[0]!r}")
            names = {m: asked.get(m) or DEFAULT_ENCODERS.get(m) for m in aligner.modalities_}
            unnamed = sorted(m for m, name in names.items() if name is None)
            if unnamed:
                raise ValueError(f"{path} is an aligner without its encoders: name the encoder of {unnamed[0]!r}")
            records = {m: EncoderRecord(str(name), None, aligner.dims_[m]) for m, name in names.items()}
            settings: dict[str, Any] = {"backend": backend or DEFAULT_BACKEND}
        else:
            if section.get("format") != FORMAT:
                raise ValueError(f"{path}: unsupported model format {section.get('format')!r} (expected {FORMAT})")
            records = {
                m: EncoderRecord(r["name"], r["cache_key"], int(r["dim"])) for m, r in section["encoders"].items()
            }
            for modality, name in asked.items():
                fitted = records.get(modality)
                if fitted is None:
                    raise EncoderMismatchError(f"{path} has no modality {modality!r}; it has {', '.join(records)}")
                if name != fitted.name:
                    raise EncoderMismatchError(
                        f"{modality} encoder {name!r} was asked for, but {path} was fitted on {modality} encoder "
                        f"{fitted.name!r} (embeddings of other encoders are not comparable): drop the option, "
                        f"or fit a model on {name!r}"
                    )
            if backend is not None and backend != section["backend"]:
                raise EncoderMismatchError(
                    f"backend {backend!r} was asked for, but {path} was fitted with backend {section['backend']!r}: "
                    "drop the option, or fit a model with it"
                )
            settings = {"backend": section["backend"], **section["scoring"], "about": section.get("about", {})}
            try:
                calibration = section.get("calibration", {})
                settings["calibration"] = {str(key): Calibrator.from_json(c) for key, c in calibration.items()}
                if section.get("bridges"):
                    settings["bridges"] = _read_bridges(section["bridges"], read_extra(path))
            except (AttributeError, KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}: {error}") from None
        if csls_k is not None:
            settings["csls_k"] = csls_k
        return cls(aligner, records, path=path, **settings)

    def _source(self) -> str:
        return str(self.path) if self.path is not None else "the model"


def _bridge_arrays(bridges: Mapping[str, QueryBridge]) -> dict[str, np.ndarray]:
    """The arrays of each bridge, in order: its bank, and its votes stored once each (an image
    votes for every one of its captions) with the row of each bank entry's vote."""
    arrays: dict[str, np.ndarray] = {}
    for i, bridge in enumerate(bridges.values()):
        votes, rows = np.unique(bridge.votes_, axis=0, return_inverse=True)
        arrays |= {f"bridge{i}/bank": bridge.bank_, f"bridge{i}/votes": votes, f"bridge{i}/rows": rows.ravel()}
    return arrays


def _read_bridges(params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, QueryBridge]:
    """The bridges of a model file: ``params`` by route (its header), arrays by :func:`_bridge_arrays`."""
    bridges = {}
    for i, (key, settings) in enumerate(params.items()):
        names = [f"bridge{i}/{part}" for part in ("bank", "votes", "rows")]
        if missing := [name for name in names if name not in arrays]:
            raise ValueError(f"the bridge of {key} lacks its arrays ({', '.join(missing)})")
        votes, rows = arrays[names[1]], arrays[names[2]]
        if rows.ndim != 1 or (rows.size and not 0 <= rows.min() <= rows.max() < len(votes)):
            raise ValueError(f"the bridge of {key} is corrupt: its vote rows point outside its {len(votes)} votes")
        bridges[str(key)] = QueryBridge(**settings).fit(arrays[names[0]], votes[rows])
    return bridges


def route(query: str, gallery: str, csls: bool = False) -> str:
    """The key of a calibration: ``"text->image"``, ``"text->image+csls"``."""
    return f"{query}->{gallery}{'+csls' if csls else ''}"
