"""LiT-style contrastive tuning of a text encoder against a locked image encoder.

"Locked-image Tuning" (Zhai et al. 2022): the image tower stays frozen; the text tower learns
to meet it. Here the image side is the cached embedding of a frozen image encoder; the text
side is a sentence-transformers model whose last ``trainable_layers`` transformer layers are
tuned (the rest stay frozen). Each side gets a linear projection into a ``dim``-d space,
both started at the weighted-CCA solution of the untuned embeddings, and the whole is trained
with symmetric InfoNCE (learnable temperature), AdamW, one caption per image per batch, and
early stopping on the dev split's loss (or on held-out train images), all by the one training
loop of :mod:`xmodal.align.training`. The tuned text encoder is saved as an ordinary
sentence-transformers folder (its own output, without the projection), so the closed-form
aligners and heads are simply re-fitted on its embeddings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xmodal.align.heads import Heads, init_linear_from_cca
from xmodal.align.losses import symmetric_info_nce
from xmodal.align.training import holdout, logit_scale_parameter, rows_by_group, seeded, train
from xmodal.core.arrays import check_embeddings, unit_rows
from xmodal.core.config import DEFAULT_BACKEND, DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, default_models_dir
from xmodal.core.estimator import Estimator
from xmodal.core.files import atomic_folder
from xmodal.data.dataset import PairedDataset
from xmodal.encoders import ENCODERS, get_encoder
from xmodal.encoders.base import FINETUNE_METADATA, EncoderError, check_texts
from xmodal.encoders.text import SentenceTransformerEncoder
from xmodal.store import EmbeddingStore, embed_split


class LiTTuner(Estimator):
    """Tune the last layers of ``encoder`` (a :class:`SentenceTransformerEncoder`) so that its
    embeddings of captions match the locked image embeddings of their images."""

    def __init__(
        self,
        trainable_layers: int = 4,
        dim: int = 256,
        epochs: int = 16,
        batch_size: int = 256,
        lr: float = 1e-4,
        head_lr: float = 1e-4,
        weight_decay: float = 0.01,
        temperature: float = 0.05,
        patience: int = 2,
        seed: int = 0,
        progress: bool = True,
        validation_fraction: float = 0.1,
    ):
        self.trainable_layers = trainable_layers
        self.dim = dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.patience = patience
        self.seed = seed
        self.progress = progress
        self.validation_fraction = validation_fraction

    def fit(
        self,
        encoder: SentenceTransformerEncoder,
        texts: Sequence[str],
        images: np.ndarray,
        groups: np.ndarray,
        validation: tuple[Sequence[str], np.ndarray] | None = None,
        untuned: np.ndarray | None = None,
        image_views: Sequence[np.ndarray] = (),
    ) -> LiTTuner:
        """Tune ``encoder`` in place on captions ``texts`` paired row-wise with ``images``.

        ``groups`` (the image of each caption) keeps one caption per image in a batch;
        ``validation`` is ``(captions, their image embeddings)``, one caption per image (without
        it, ``validation_fraction`` of the images are held out, seeded); ``untuned``
        (optional, e.g. from the cache) is ``encoder``'s embedding of ``texts`` before tuning,
        used to start the projections at CCA. ``image_views`` are other embeddings of the same
        images (e.g. mirrored), row-paired with ``images``: each training row then uses a
        random view (augmentation); validation uses ``images``.
        """
        texts = check_texts(texts, encoder.name)
        images = check_embeddings(images, "image embeddings")
        if len(texts) != len(images):
            raise ValueError(f"captions and image embeddings must be row-paired: {len(texts)} vs {len(images)}")
        group_rows = rows_by_group(groups, len(texts))
        if validation is None:
            carved = holdout(group_rows, self.validation_fraction, self.seed)
            if carved is None:
                raise ValueError("LiT tuning needs a validation set: give one, or at least 4 images to hold some out")
            group_rows, held = carved
            validation = ([texts[i] for i in held], images[held])
        val_texts = check_texts(validation[0], f"{encoder.name} (validation)")
        val_images = check_embeddings(validation[1], "validation image embeddings")
        if len(val_texts) != len(val_images):
            raise ValueError(
                f"validation captions and image embeddings must be row-paired: {len(val_texts)} vs {len(val_images)}"
            )
        rng = seeded(self.seed)
        model = encoder.model
        tuned = self._unfreeze(model)
        if untuned is None:
            untuned = encoder.encode(texts, batch_size=256, progress=self.progress)
        fitted = np.sort(np.concatenate(group_rows))  # the rows trained on (not the held-out ones)
        heads = self._heads(check_embeddings(untuned, "untuned text embeddings")[fitted], images[fitted])
        logit_scale = logit_scale_parameter(self.temperature)
        optimiser = torch.optim.AdamW(
            [
                {"params": [p for p in model.parameters() if p.requires_grad], "lr": self.lr},
                {"params": [*heads.parameters(), logit_scale], "lr": self.head_lr},
            ],
            weight_decay=self.weight_decay,
        )
        views = [images, *(check_embeddings(v, f"image view {i + 1}") for i, v in enumerate(image_views))]
        if any(v.shape != images.shape for v in views):
            raise ValueError(
                f"image views must have the shape of the images {images.shape}: {[v.shape for v in views]}"
            )
        image_t = torch.from_numpy(np.stack([unit_rows(v) for v in views]))  # (views, n, d)
        val_image_t = torch.from_numpy(unit_rows(val_images))

        def loss_of(batch_texts: list[str], batch_images: torch.Tensor) -> torch.Tensor:
            features = model.preprocess(batch_texts)
            text = model(features)["sentence_embedding"]
            return symmetric_info_nce(
                F.normalize(heads["text"](text), dim=-1), F.normalize(heads["image"](batch_images), dim=-1), logit_scale
            )

        def batch_loss(batch: np.ndarray) -> torch.Tensor:
            view = torch.from_numpy(rng.integers(len(views), size=len(batch)))
            return loss_of([texts[i] for i in batch], image_t[view, torch.from_numpy(batch)])

        started = time.perf_counter()
        history = train(
            model,
            optimiser,
            batch_loss,
            lambda _: loss_of(val_texts, val_image_t),
            group_rows,
            rng,
            epochs=self.epochs,
            batch_size=self.batch_size,
            patience=self.patience,
            logit_scale=logit_scale,
            monitor_first=True,
            keep=tuned.__contains__,
            desc="LiT",
            progress=self.progress,
        )
        for p in model.parameters():
            p.requires_grad_(True)
        self.history_ = history.losses
        self.best_epoch_ = history.best
        self.seconds_ = time.perf_counter() - started
        return self

    def save_encoder(self, encoder: SentenceTransformerEncoder, path: str | Path, about: dict[str, Any]) -> Path:
        """Write the tuned model as a sentence-transformers folder, with how it was made
        (``xmodal-finetune.json``); the folder appears whole or not at all."""
        self._check_fitted()
        record = {
            "method": "LiT",
            "params": self.get_params(),
            "validation_loss": self.history_,
            "best_epoch": self.best_epoch_,
            "seconds": round(self.seconds_, 1),
            **about,
        }
        with atomic_folder(path) as tmp:
            encoder.model.save(str(tmp))
            (tmp / FINETUNE_METADATA).write_text(json.dumps(record, indent=1))
        return Path(path)

    # -- helpers ----------------------------------------------------------------------------
    def _unfreeze(self, model: Any) -> set[str]:
        """Freeze everything but the last ``trainable_layers`` transformer layers; their names."""
        layers = _transformer_layers(model)
        if not 1 <= self.trainable_layers <= len(layers):
            raise ValueError(f"trainable_layers must be in 1..{len(layers)}, got {self.trainable_layers}")
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in layers[-self.trainable_layers :]:
            for p in layer.parameters():
                p.requires_grad_(True)
        return {name for name, p in model.named_parameters() if p.requires_grad} | {
            name for name, _ in model.named_buffers()
        }

    def _heads(self, text: np.ndarray, images: np.ndarray) -> Heads:
        """Linear projections started at weighted CCA between untuned text and the images."""
        if text.shape[0] != images.shape[0]:
            raise ValueError(f"untuned text embeddings have {text.shape[0]} rows, expected {images.shape[0]}")
        heads = Heads({"text": nn.Linear(text.shape[1], self.dim), "image": nn.Linear(images.shape[1], self.dim)})
        init_linear_from_cca(heads, {"text": unit_rows(text), "image": unit_rows(images)}, self.dim)
        return heads


def _transformer_layers(model: Any) -> nn.ModuleList:
    """The transformer layer stack of a sentence-transformers model (BERT-like encoders)."""
    auto = getattr(model[0], "auto_model", None)
    layers = getattr(getattr(auto, "encoder", None), "layer", None)
    if layers is None:
        raise EncoderError("LiT tuning needs a BERT-like sentence-transformers model (encoder.layer)")
    return layers


def finetune_on_dataset(
    dataset: PairedDataset,
    store: EmbeddingStore,
    tuner: LiTTuner,
    *,
    base: str = DEFAULT_TEXT_ENCODER,
    image_encoder: str = DEFAULT_IMAGE_ENCODER,
    name: str = "minilm-lit",
    image_views: Sequence[str] = (),
    train_split: str = "train",
    dev_split: str = "dev",
    backend: str = DEFAULT_BACKEND,
    models_dir: str | Path | None = None,
) -> Path:
    """Tune ``base`` on the (caption, image) pairs of ``train_split`` (early stopping on
    ``dev_split``, or on a share of the train images held out when the dataset has no such
    split) and save it as encoder ``name`` in the models folder. ``image_views`` names
    encoders of other views of the images (e.g. ``efficientnet-lite0-mirror``) used as
    training augmentation."""
    if name in ENCODERS or not name.replace("-", "").replace("_", "").isalnum():
        raise EncoderError(
            f"cannot name a tuned encoder {name!r}: use letters, digits, '-' or '_', not a registry name"
        )
    models = Path(models_dir) if models_dir is not None else default_models_dir()
    encoder = get_encoder(base, backend=backend, models_dir=models)
    if not isinstance(encoder, SentenceTransformerEncoder):
        raise EncoderError(f"{base!r} is not a sentence-transformers text encoder; LiT tuning needs one")

    def caption_image_pairs(
        split: str, first_only: bool, image_encoders: Sequence[str]
    ) -> tuple[list[str], list[np.ndarray], np.ndarray, np.ndarray]:
        """Captions, their image embeddings (one array per image encoder), their items, and
        their untuned text embeddings (all through the cache)."""
        part = dataset.split(split)
        captions = part.flatten("text").values
        views = [
            embed_split(part, store, encoder, e, backend=backend, models_dir=models, progress=tuner.progress)
            for e in image_encoders
        ]
        t_rows, i_rows = views[0].pair_rows(first_only)
        return (
            [captions[i] for i in t_rows],
            [v.image[i_rows] for v in views],
            views[0].text_items[t_rows],
            views[0].text[t_rows],
        )

    texts, (image_rows, *view_rows), groups, untuned = caption_image_pairs(
        train_split, False, [image_encoder, *image_views]
    )
    validation = None
    if dev_split in dataset.splits:
        val_texts, (val_images,), _, _ = caption_image_pairs(dev_split, True, [image_encoder])
        validation = (val_texts, val_images)
    tuner.fit(encoder, texts, image_rows, groups, validation, untuned=untuned, image_views=view_rows)
    about = {
        "base": base,
        "image_encoder": image_encoder,
        "image_views": list(image_views),
        "dataset": dataset.name,
        "train_split": train_split,
        "dev_split": dev_split if validation else None,
        "pairs": len(texts),
    }
    return tuner.save_encoder(encoder, models / name, about)
