"""Tux Paint's stamps as a manifest: clip art with descriptions in many languages and recordings.

The Debian package ``tuxpaint-stamps-default`` (fetched by name with ``apt-get download`` and
unpacked with ``dpkg-deb -x``: ``make tuxpaint``) holds, under ``usr/share/tuxpaint/stamps``,
about 950 stamps. Each stamp ``NAME`` has a description file ``NAME.txt`` (an English first
line, then ``LANG.utf8=...`` translations), an image ``NAME.png`` (transparent) or only
``NAME.svg``, and often spoken descriptions ``NAME_desc.ogg`` (English) and
``NAME_desc_LANG.ogg``, and a sound effect ``NAME.ogg``.

:func:`write_tuxpaint_manifest` writes one JSONL item per stamp with an image and an English
description: ``image``, ``text.LANG`` for each asked language the stamp has, ``audio.LANG`` for
each recording, ``audio.sound`` for the stamp's sound effect (``NAME.ogg``; the four silent
placeholders are left out), ``label``: the stamp's top-level folder (``animals``, ``vehicles``, ``food``,
..., 16 of them), and a seeded 70/30 train/test split (the same stamps and split whatever the
languages).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xmodal.core.files import write_text_atomic
from xmodal.data.dataset import DataError

STAMPS_PATH = Path("usr/share/tuxpaint/stamps")  # inside the unpacked package
LANGUAGES = ("en", "fr", "de", "es", "ru")
TEST_FRACTION = 0.3


def stamps_folder(root: str | Path) -> Path:
    """The stamps folder of the package unpacked under ``root``; a clear error when it is not there."""
    folder = Path(root) / STAMPS_PATH
    if not folder.is_dir():
        raise DataError(f"Tux Paint stamps not found under {root} (expected {folder}); fetch them with `make tuxpaint`")
    return folder.resolve()


def _descriptions(path: Path) -> dict[str, str]:
    """``{language: description}`` of a stamp's ``.txt``: the first line is English."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    found = {"en": lines[0].strip()} if lines else {}
    for line in lines[1:]:
        key, eq, text = line.partition("=")
        language, _, encoding = key.strip().partition(".")
        if eq and encoding == "utf8" and text.strip():
            found.setdefault(language, text.strip())
    return {language: text for language, text in found.items() if text}


def _audible(path: Path) -> bool:
    """Whether the clip has a sample that is not zero (a few stamps' sounds are silent placeholders)."""
    import soundfile

    samples, _ = soundfile.read(str(path), dtype="float32")
    return bool(samples.size and np.abs(samples).max() > 0)


def stamp_items(stamps: Path, languages: tuple[str, ...] = LANGUAGES) -> list[dict[str, object]]:
    """One manifest item (without split) per stamp that has an image and an English description,
    labelled by its top-level folder."""
    items: list[dict[str, object]] = []
    for description in sorted(stamps.rglob("*.txt")):
        image = next((p for p in (description.with_suffix(s) for s in (".png", ".svg")) if p.is_file()), None)
        texts = _descriptions(description)
        if image is None or "en" not in texts:
            continue
        name = description.relative_to(stamps).with_suffix("")
        item: dict[str, object] = {"id": str(name), "label": name.parts[0], "image": str(image)}
        item.update({f"text.{lang}": texts[lang] for lang in languages if lang in texts})
        stem = description.with_suffix("")
        for lang in languages:
            audio = stem.parent / f"{stem.name}_desc{'' if lang == 'en' else '_' + lang}.ogg"
            if audio.is_file():
                item[f"audio.{lang}"] = str(audio)
        sound = stem.with_suffix(".ogg")
        if sound.is_file() and _audible(sound):
            item["audio.sound"] = str(sound)
        items.append(item)
    return items


def write_tuxpaint_manifest(
    root: str | Path, path: str | Path, *, seed: int = 0, languages: tuple[str, ...] = LANGUAGES
) -> dict[str, int]:
    """Write the manifest of the package unpacked under ``root`` to ``path`` (atomically);
    returns counts: items, test items, SVG-only stamps, labels (folders), and items per modality."""
    items = stamp_items(stamps_folder(root), languages)
    test = set(np.random.default_rng(seed).permutation(len(items))[: round(TEST_FRACTION * len(items))].tolist())
    for i, item in enumerate(items):
        item["split"] = "test" if i in test else "train"
    write_text_atomic(Path(path), "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    counts = {
        "items": len(items),
        "test": len(test),
        "svg": sum(str(i["image"]).endswith(".svg") for i in items),
        "labels": len({i["label"] for i in items}),
    }
    for item in items:
        for key in item:
            if key.startswith(("text.", "audio.")):
                counts[key] = counts.get(key, 0) + 1
    return counts
