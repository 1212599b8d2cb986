"""`xmodal classify` on Tux Paint's stamps: a small image <-> English model classifies the test
pictures by their folder (animals, vehicles, ...) above the majority-class rate; its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.data, pytest.mark.weights]


def said(result) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def stamps(tuxpaint, models_dir, tmp_path_factory, xmodal) -> tuple[Path, Path, list[str]]:
    """(manifest of every 4th stamp, a model fitted on its train split, common options): 238
    stamps of the 16 folders, 171 to fit on, 67 to classify."""
    from xmodal.data.tuxpaint import write_tuxpaint_manifest

    folder = tmp_path_factory.mktemp("classify")
    full = folder / "all.jsonl"
    write_tuxpaint_manifest(tuxpaint, full, languages=("en",))
    manifest = folder / "stamps.jsonl"
    manifest.write_text("".join(full.read_text().splitlines(keepends=True)[::4]))
    common = ["--cache", folder / "cache", "--models", models_dir]
    model = folder / "model.npz"
    fitted = xmodal("fit", manifest, "--modality", "text.en", "--modality", "image", "--aligner", "procrustes-t2i",
                    "--out", model, *common)  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    return manifest, model, common


def test_classify_the_test_pictures_by_folder(stamps, tmp_path, xmodal):
    manifest, model, common = stamps
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"naturalforces": "natural force", "animals": ["animal", "bird"]}))
    out, results = tmp_path / "out.json", tmp_path / "RESULTS.md"
    ran = xmodal("classify", model, manifest, "--class-names", names, "--template", "{}", "--template", "a {}.",
                 "--json", out, "--results", results, "--worst", "3", *common)  # fmt: skip
    assert ran.exit_code == 0, ran.output
    written = json.loads(out.read_text())
    metrics = written["metrics"]
    assert written["classes"][:3] == ["animals", "clothes", "food"] and len(written["classes"]) == 16
    assert written["names"]["animals"] == ["animal", "bird"] and written["names"]["food"] == ["food"]
    assert sum(row["queries"] for row in written["per_class"]) == 67
    assert metrics["top1"] > metrics["majority top1"] + 10 and metrics["top5"] > metrics["majority top5"]
    assert metrics["chance top1"] == 100 / 16
    assert "Zero-shot classification: stamps/test image by label (16 classes, prompts in text.en)" in said(ran)
    assert f"| top1 | {metrics['top1']:.1f} |" in results.read_text()
    assert "Worst 3 classes:" in results.read_text()


def test_classify_errors(stamps, tmp_path, xmodal):
    manifest, model, common = stamps
    unlabelled = tmp_path / "unlabelled.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    unlabelled.write_text(
        "".join(json.dumps({**i, "label": None if i["split"] == "test" else i["label"]}) + "\n" for i in lines)
    )
    cases = [
        ([unlabelled], "unlabelled/test: no item has a 'label' label (label keys: none)"),
        (
            [manifest, "--query-modality", "audio.fr"],
            "--query-modality audio.fr: the model has no such modality; it has text.en, image",
        ),
        ([manifest, "--text-modality", "image"], "--text-modality image: its encoder reads image, not text"),
        ([manifest, "--template", "a picture"], "template 'a picture' has no {} where the class name goes"),
        ([manifest, "--label-key", "label.kind"], "stamps: no item has a 'label.kind' label (label keys: label)"),
    ]
    for args, message in cases:
        ran = xmodal("classify", model, *args, *common)
        assert ran.exit_code == 2, ran.output
        assert said(ran) == f"error: {message}"


def test_unlabelled_items_are_skipped(stamps, tmp_path, xmodal):
    manifest, model, common = stamps
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    test = [i["id"] for i in lines if i["split"] == "test"]
    partial = tmp_path / "partial.jsonl"
    partial.write_text(
        "".join(json.dumps({**i, "label": None if i["id"] in test[:7] else i["label"]}) + "\n" for i in lines)
    )
    out = tmp_path / "out.json"
    ran = xmodal("classify", model, partial, "--json", out, *common)
    assert ran.exit_code == 0, ran.output
    assert "7 unlabelled items skipped" in said(ran)
    assert json.loads(out.read_text())["unlabelled"] == 7
    assert sum(row["queries"] for row in json.loads(out.read_text())["per_class"]) == len(test) - 7
