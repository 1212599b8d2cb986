"""`xmodal index build|add` and `xmodal search` on real Flickr8k items."""

from __future__ import annotations

import json

import pytest

from xmodal.search.storage import current_generation

pytestmark = [pytest.mark.data, pytest.mark.weights]


def _manifest(path, items):
    path.write_text("".join(json.dumps({"id": i.id, "image": i.path, "texts": list(i.captions)}) + "\n" for i in items))
    return path


@pytest.fixture(scope="module")
def built(small_model, gallery_items, cache_dir, models_dir, tmp_path_factory, xmodal):
    """An index of 8 test images built by the CLI, then grown by 4 with `index add`."""
    folder = tmp_path_factory.mktemp("cli-index")
    items = gallery_items[:12]
    model = small_model.save(folder / "cca.npz")
    out = folder / "index"
    first = _manifest(folder / "first.jsonl", items[:8])
    result = xmodal(
        "index", "build", first, "--model", model, "--out", out, "--cache", cache_dir, "--models", models_dir
    )
    assert result.exit_code == 0, result.output
    assert "indexed 8 image items (flat)" in result.output
    result = xmodal(
        "index", "add", out, _manifest(folder / "more.jsonl", items[8:]), "--cache", cache_dir, "--models", models_dir
    )
    assert result.exit_code == 0, result.output
    assert "added 4 items -> 12" in result.output
    return out, items


def test_search_by_text_prints_a_table(built, models_dir, xmodal):
    out, items = built
    result = xmodal("search", out, "two dogs play in the snow", "-k", "3", "--models", models_dir)
    assert result.exit_code == 0, result.output
    for column in ("rank", "score", "id", "path", "caption"):
        assert column in result.output
    assert sum(item.id in result.output for item in items) == 3


def test_search_by_image_as_json(built, models_dir, xmodal):
    out, items = built
    result = xmodal("search", out, "--image", items[10].path, "-k", "12", "--json", "--models", models_dir)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert [r["rank"] for r in answer["results"]] == list(range(1, 13))
    assert answer["results"][0]["id"] == items[10].id and answer["results"][0]["captions"] == list(items[10].captions)


def test_search_with_csls_and_fusion(built, models_dir, xmodal):
    out, items = built
    csls = json.loads(xmodal("search", out, "a dog", "--csls", "--json", "-k", "2", "--models", models_dir).stdout)
    assert len(csls["results"]) == 2
    fused = xmodal(
        "search", out, "people", "--image", items[2].path, "--fusion", "score", "--json", "--models", models_dir
    )
    assert json.loads(fused.stdout)["results"][0]["id"] == items[2].id


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "INDEX", "a dog", "-k", "0"], "k must be >= 1, got 0"),
        (["search", "INDEX", "a dog", "-k", "13"], "k must be between 1 and the gallery size 12, got 13"),
        (["search", "INDEX", "  "], "the text query is empty"),
        (["search", "INDEX"], "a query needs a text, a file, or both"),
        (["search", "INDEX", "--image", "missing.jpg"], "image file not found: missing.jpg"),
        (["search", "nowhere"], "not an xmodal index: nowhere/manifest.json not found"),
        (["index", "add", "INDEX", "texts.txt"], "is a gallery of images; texts.txt holds texts"),
        (
            ["index", "build", "texts.txt", "--model", "cca.npz", "--out", "x", "--kind", "lsh"],
            "unknown index kind 'lsh'",
        ),
        (
            ["index", "build", "texts.txt", "--model", "cca.npz", "--out", "x", "--text-encoder", "mpnet"],
            "text encoder 'mpnet' was asked for, but cca.npz was fitted on text encoder 'minilm'",
        ),
    ],
)
def test_bad_input_gives_one_clear_line(built, models_dir, tmp_path, monkeypatch, args, message, xmodal):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "texts.txt").write_text("a dog\n")
    (tmp_path / "cca.npz").write_bytes((current_generation(built[0]) / "model.npz").read_bytes())
    result = xmodal(*[built[0] if a == "INDEX" else a for a in args], "--models", models_dir)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in " ".join(result.output.split())
    assert "Traceback" not in result.output
