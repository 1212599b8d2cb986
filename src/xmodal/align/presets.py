"""Named aligner configurations used by the CLI and the benchmark.

Hyper-parameters of the tuned rows were chosen on the Flickr8k dev split, never on test:
with the default encoders (minilm + efficientnet-lite0) for ``lstsq-*`` (ridge in
{0.1, 1, 10}) and ``cca-*-weighted`` (dimension in {64, 128, 192, 256, 384}, regularisation
in {1e-3, 1e-2, 0.1, 0.3, 1, 3, 10}, correlation weight power in {0, 0.25, 0.5, ..., 4});
with the concatenated encoders of ``make bench-best`` (1,152-d text, 3,840-d image) for
``cca-384-wide`` (dimension in {256, 384, 512}, regularisation in {1, 2, 4}, power in
{0.5, 0.75, 1}).
"""

from __future__ import annotations

from collections.abc import Callable

from xmodal.align.base import Aligner
from xmodal.align.closed_form import CCAAligner, IdentityAligner, LeastSquaresAligner, PivotAligner, ProcrustesAligner
from xmodal.align.few_pair import SelfTrainingAligner

ALIGNERS: dict[str, Callable[[], Aligner]] = {
    "identity": IdentityAligner,
    "lstsq-t2i": lambda: LeastSquaresAligner("text", "image", ridge=1.0),
    "lstsq-i2t": lambda: LeastSquaresAligner("image", "text", ridge=10.0),
    "procrustes-t2i": lambda: ProcrustesAligner("text", "image"),
    "procrustes-i2t": lambda: ProcrustesAligner("image", "text"),
    "procrustes-pca256": lambda: ProcrustesAligner("text", "image", n_components=256),
    "cca-128": lambda: CCAAligner(n_components=128, reg=1e-3, weight_power=0.0),
    "cca-128-weighted": lambda: CCAAligner(n_components=128, reg=1.0, weight_power=0.5),
    "cca-256-weighted": lambda: CCAAligner(n_components=256, reg=1.0, weight_power=0.5),
    "cca-384-wide": lambda: CCAAligner(n_components=384, reg=2.0, weight_power=0.75),
}
# N modalities, each regressed onto the image space from its rows with images (ridge as lstsq-t2i;
# for text and image alone it is lstsq-t2i, so the text-image benchmark leaves it out).
PIVOT_ALIGNERS: dict[str, Callable[[], Aligner]] = {"pivot-image": lambda: PivotAligner("image", ridge=1.0)}
# A few pairs and many unpaired values (issue 15): self-training, with the image encoder's own
# ImageNet classifier read through the text encoder as a zero-pair prior in "-imagenet".
FEW_PAIR_ALIGNERS: dict[str, Callable[[], Aligner]] = {
    "self-training": SelfTrainingAligner,
    "self-training-imagenet": lambda: SelfTrainingAligner(imagenet_prior=True),
}
# Trained heads (opt-in: `xmodal bench flickr8k --aligner head-mlp-cca`); fitted with the
# train split's item ids as groups and the dev split for early stopping. "-cca" heads start
# at the cca-256-weighted solution and fine-tune it with InfoNCE; "-pcmr" heads train with
# the similarity-regression objective instead. Any head without "-cca" also aligns N
# modalities at once (`xmodal bench flickr8k-multi30k`). heads.py (and torch) is imported
# only when a head is made.
HEAD_KINDS = ("linear", "mlp", "gmlp")  # xmodal.align.heads.HEADS


def _head(head: str, objective: str, init: str) -> Callable[[], Aligner]:
    def make() -> Aligner:
        from xmodal.align.heads import HeadAligner

        lr, weight_decay = (1e-3, 0.1) if init == "random" else (1e-4, 1e-2)
        return HeadAligner(
            head=head, objective=objective, init=init, lr=lr, weight_decay=weight_decay, dropout=0.3,
            dim=256, batch_size=1024, epochs=100, patience=10,
        )  # fmt: skip

    return make


TRAINED_ALIGNERS: dict[str, Callable[[], Aligner]] = {
    f"head-{head}{'-pcmr' if objective == 'pcmr' else ''}{'-cca' if init == 'cca' else ''}": _head(
        head, objective, init
    )
    for objective in ("pcmc", "pcmr")
    for head in HEAD_KINDS
    for init in ("random", "cca")
}
PRESETS = {**ALIGNERS, **PIVOT_ALIGNERS, **FEW_PAIR_ALIGNERS, **TRAINED_ALIGNERS}


def make_aligner(name: str, pair: tuple[str, str] = ("text", "image")) -> Aligner:
    """A fresh, unfitted aligner of the configuration called ``name``.

    The presets are written for the pair (text, image); for another ``pair`` of modalities
    ``(first, second)``, directed ones map the same way round: ``lstsq-t2i`` maps ``first``
    onto ``second``, ``lstsq-i2t`` ``second`` onto ``first``.
    """
    factory = PRESETS.get(name)
    if factory is None:
        known = ", ".join(PRESETS)
        raise ValueError(f"unknown aligner {name!r}; known aligners: {known}")
    aligner = factory()
    params = aligner.get_params()
    if "source" in params and pair != ("text", "image"):
        rename = dict(zip(("text", "image"), pair))
        aligner.set_params(source=rename[params["source"]], target=rename[params["target"]])
    return aligner
