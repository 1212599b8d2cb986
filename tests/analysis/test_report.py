"""`xmodal analyze` on a slice of real Flickr8k: every figure a valid PNG, every table present."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from xmodal.analysis.compare import GAP_COLUMNS, similarity_rows
from xmodal.analysis.spaces import UNALIGNED, fit_spaces, zero_pad
from xmodal.model import TrainingSet
from xmodal.store import EmbeddingStore, embed_split

ALIGNERS = ["procrustes-t2i", "cca-128-weighted"]


@pytest.fixture(scope="module")
def report(data_root, cache_dir, tmp_path_factory, xmodal):
    out = tmp_path_factory.mktemp("report")
    args = [
        "analyze",
        "flickr8k",
        "--out",
        str(out),
        "--limit",
        "40",
        "--failures",
        "3",
        "--learned",
        "bilinear",
        "--data",
        str(data_root),
        "--cache",
        str(cache_dir),
    ]
    for name in ALIGNERS:
        args += ["--aligner", name]
    result = xmodal(*args)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.data
@pytest.mark.weights
def test_every_figure_is_a_valid_png(report):
    figures = sorted((report / "figures").glob("*"))
    assert {p.name for p in figures} == {"projections.png", "similarity_histograms.png", "recall_at_k.png"}
    for path in figures:
        assert path.stat().st_size > 10_000
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 300
            image.verify()


@pytest.mark.data
@pytest.mark.weights
def test_every_table_and_the_gallery_are_in_the_html(report):
    page = (report / "report.html").read_text()
    for table in ("gaps", "correlations", "similarities"):
        assert f'<table id="{table}">' in page
    for column in GAP_COLUMNS:
        assert f"<th>{column}</th>" in page
    for space in (UNALIGNED, *ALIGNERS):
        assert f"<td>{space}</td>" in page
    assert "<td>learned bilinear</td>" in page
    for figure in ("projections", "similarity_histograms", "recall_at_k"):
        assert f'src="figures/{figure}.png"' in page
    assert page.count('class="failure"') == 3
    thumbs = [part.split('"')[0] for part in page.split('src="thumbs/')[1:]]
    assert len(thumbs) == 3 * 4  # 3 wrong + the right image per failure
    assert all((report / "thumbs" / name).stat().st_size > 0 for name in thumbs)


@pytest.mark.data
@pytest.mark.weights
def test_analysis_json_holds_the_measures(report):
    analysis = json.loads((report / "analysis.json").read_text())
    assert list(analysis["gaps"]) == [UNALIGNED, *ALIGNERS]
    unaligned, cca = analysis["gaps"][UNALIGNED], analysis["gaps"]["cca-128-weighted"]
    assert cca["centroid gap"] < unaligned["centroid gap"]  # alignment closes the modality gap
    assert cca["mean R@10"] > unaligned["mean R@10"]
    assert all(0 <= row["never t2i %"] <= 100 for row in analysis["gaps"].values())
    assert set(analysis["correlations"]) >= {"W2 exact", "centroid gap"}
    failures = analysis["failures"]
    assert [f["rank"] for f in failures] == sorted((f["rank"] for f in failures), reverse=True)


def test_zero_pad_keeps_coordinates():
    text, image = zero_pad(np.ones((2, 3)), np.full((4, 5), 2.0))
    assert text.shape == (2, 5) and image.shape == (4, 5)
    np.testing.assert_array_equal(text[:, 3:], 0.0)
    np.testing.assert_array_equal(text[:, :3], 1.0)


@pytest.mark.data
@pytest.mark.weights
def test_similarity_rows_skip_what_dimensions_forbid(flickr8k, cache_dir):
    store = EmbeddingStore(cache_dir)
    train, test = (
        embed_split(flickr8k.split(s).subset(40), store, "minilm", "efficientnet-lite0", progress=False)
        for s in ("train", "test")
    )
    spaces = fit_spaces(["procrustes-t2i"], TrainingSet.from_pairs(train))
    rows = similarity_rows(spaces, train, test, learned=["mlp", "bilinear"])
    got = {(r["space"], r["similarity"]) for r in rows}
    # Unaligned: 384-d text vs 1280-d images, only the bilinear form compares them.
    assert got == {(UNALIGNED, "learned bilinear")} | {
        ("procrustes-t2i", s) for s in ("cosine", "dot", "euclidean", "manhattan", "learned mlp", "learned bilinear")
    }
    with pytest.raises(ValueError, match="unknown learned similarity 'svm'"):
        similarity_rows(spaces, train, test, learned=["svm"])


@pytest.mark.data
@pytest.mark.weights
def test_analyze_measures_a_fitted_model_with_its_encoders(small_model, data_root, cache_dir, tmp_path, xmodal):
    model_file = small_model.save(tmp_path / "small.npz")
    args = [
        "analyze",
        "flickr8k",
        "--out",
        str(tmp_path / "report"),
        "--limit",
        "30",
        "--failures",
        "1",
        "--model",
        str(model_file),
        "--data",
        str(data_root),
        "--cache",
        str(cache_dir),
    ]
    result = xmodal(*args)
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "report" / "analysis.json").read_text())
    assert list(analysis["gaps"]) == [UNALIGNED, "model small"]
    assert analysis["gaps"]["model small"]["mean R@10"] > analysis["gaps"][UNALIGNED]["mean R@10"]
    refused = xmodal(*args, "--text-encoder", "mpnet")
    assert refused.exit_code == 2 and "text encoder 'mpnet' was asked for" in " ".join(refused.output.split())
