"""The Tux Paint manifest builder, on the real Debian package (``make tuxpaint``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xmodal.data import DataError, load_manifest
from xmodal.data.tuxpaint import write_tuxpaint_manifest

PENNY = "symbols/money/us/coins/001penny"
FOLDERS = {
    "animals", "clothes", "food", "hobbies", "household", "medical", "military", "naturalforces", "people", "plants",
    "seasonal", "space", "sports", "symbols", "town", "vehicles",
}  # fmt: skip


@pytest.mark.data
def test_manifest_of_the_stamps(tuxpaint, tmp_path):
    manifest = tmp_path / "stamps.jsonl"
    counts = write_tuxpaint_manifest(tuxpaint, manifest, seed=0)
    assert counts["items"] > 900 and counts["svg"] > 100
    assert counts["test"] == round(0.3 * counts["items"])
    assert counts["text.fr"] > 800 and counts["audio.fr"] > 800 and counts["audio.es"] > 800
    assert counts["text.ru"] > 800 and counts["audio.ru"] > 800 and counts["labels"] == len(FOLDERS)
    assert counts["audio.sound"] > 100  # the stamps' sound effects, less the silent placeholders
    dataset = load_manifest(manifest)
    modalities = {"image", "text.en", "text.fr", "text.de", "text.es", "text.ru", "audio.en", "audio.fr", "audio.ru"}
    assert set(dataset.modalities) >= modalities
    assert set(dataset.labels()) == FOLDERS and len(set(dataset.split("test").labels()) & FOLDERS) >= 14
    assert dataset.kind("audio.fr") == "audio" and dataset.kind("text.de") == "text"
    assert len(dataset.split("test")) == counts["test"]
    penny = next(item for item in dataset.items if item.id == PENNY)
    assert penny.values["text.en"] == ("A US 1 cent piece ($.01) called a penny.",)
    assert penny.values["text.fr"] == ("Une pièce de monnaie américaine de 1 cent (0,01 $), appelée “penny”.",)
    assert penny.values["audio.fr"][0].endswith("001penny_desc_fr.ogg")
    assert penny.labels == {"label": "symbols"}
    sounds = {item.id: item.values["audio.sound"][0] for item in dataset.items if "audio.sound" in item.values}
    assert sounds["animals/birds/crow"].endswith("animals/birds/crow.ogg")
    assert "animals/mammals/giraffe" not in sounds  # giraffe.ogg is all zeros
    assert any(item.values["image"][0].endswith(".svg") for item in dataset.items)
    again = tmp_path / "again.jsonl"
    write_tuxpaint_manifest(tuxpaint, again, seed=0, languages=("en",))
    english = [json.loads(line) for line in again.read_text().splitlines()]
    assert [(i["id"], i["split"]) for i in english] == [(i.id, i.split) for i in dataset.items]
    assert not any(key.endswith((".fr", ".de", ".es", ".ru")) for item in english for key in item)
    assert [i["label"] for i in english] == dataset.labels()
    write_tuxpaint_manifest(tuxpaint, again, seed=1)
    assert [json.loads(line)["split"] for line in again.read_text().splitlines()] != [i.split for i in dataset.items]


def test_missing_package_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DataError, match="Tux Paint stamps not found under .*make tuxpaint"):
        write_tuxpaint_manifest(tmp_path, tmp_path / "m.jsonl")
