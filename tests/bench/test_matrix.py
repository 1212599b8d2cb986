"""The any-modality benchmark on planted rotations: every aligner must find every item."""

from __future__ import annotations

import numpy as np

from xmodal.align import ProcrustesAligner
from xmodal.bench.matrix import MatrixResult, _combos, evaluate_fused_across, evaluate_pairs
from xmodal.store import ModalityEmbeddings


def rotated_views(n: int = 40, d: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d))
    views = {"image": base}
    for m in ("text.en", "text.fr"):
        rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
        views[m] = base @ rotation
    return {m: x.astype(np.float32) for m, x in views.items()}


def test_pairwise_aligners_recover_planted_rotations_and_fuse_by_score():
    views = rotated_views()
    n = len(views["image"])
    # text.fr misses its last 5 items: those take part only in the pairs without it
    items = {m: np.arange(n) if m != "text.fr" else np.arange(n - 5) for m in views}
    test = ModalityEmbeddings({m: views[m][items[m]] for m in views}, items, n)
    result = MatrixResult("procrustes", 0.0, n)
    to_image = {}
    for m in ("text.en", "text.fr"):
        aligner = ProcrustesAligner(m, "image", center=False).fit({m: views[m], "image": views["image"]})
        evaluate_pairs(aligner, test, result, csls_k=0)
        to_image[m] = aligner
    evaluate_fused_across(to_image, test, result, gallery="image", csls_k=0)
    assert set(result.pairs) == {("text.en", "image"), ("image", "text.en"), ("text.fr", "image"), ("image", "text.fr")}
    for metrics in [*result.pairs.values(), *result.fused.values()]:
        assert metrics["R@1"] == 100.0
    assert list(result.fused) == [(("text.en", "text.fr"), "image", "score")]
    assert result.fused_wins(("text.en", "text.fr"), "image", "score") is False  # 100 cannot be beaten


def test_fused_combinations():
    assert _combos(["a", "b"]) == [("a", "b")]
    assert _combos(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]


def test_score_fusion_across_pair_spaces_averages_independent_noise():
    rng = np.random.default_rng(3)
    views = rotated_views(n=300, d=12, seed=3)
    noisy = {m: x + (0.8 * rng.normal(size=x.shape) if m != "image" else 0) for m, x in views.items()}
    items = {m: np.arange(300) for m in views}
    test = ModalityEmbeddings({m: x.astype(np.float32) for m, x in noisy.items()}, items, 300)
    result = MatrixResult("procrustes", 0.0, 300)
    to_image = {
        m: ProcrustesAligner(m, "image").fit({m: views[m], "image": views["image"]}) for m in ("text.en", "text.fr")
    }
    for aligner in to_image.values():
        evaluate_pairs(aligner, test, result, csls_k=0)
    evaluate_fused_across(to_image, test, result, gallery="image", csls_k=0)
    alone = [result.pairs[(m, "image")]["R@1"] for m in to_image]
    assert max(alone) < 70
    assert result.fused[(("text.en", "text.fr"), "image", "score")]["R@1"] > max(alone) + 15


def test_unpaired_modalities_are_aligned_only_through_the_pivot(tmp_path):
    """Speech and text share no train item; the pivot aligner still retrieves one from the
    other through images, and the pairwise aligner has nothing to fit for that pair."""
    import json

    from xmodal.bench.matrix import run_matrix
    from xmodal.data import load_manifest

    rng = np.random.default_rng(0)
    n, d = 160, 8
    maps = {"vector.audio": rng.normal(size=(d, 10)), "vector.text": rng.normal(size=(d, 12))}
    image = rng.normal(size=(n, d))
    lines = [json.dumps({"xmodal": "manifest", "modalities": {"image": "vector"}})]
    for i in range(n):
        item = {"id": str(i), "split": "test" if i >= 120 else "train", "image": image[i].round(4).tolist()}
        item |= {m: (image[i] @ w).round(4).tolist() for m, w in maps.items()}
        lines.append(json.dumps(item))
    manifest = tmp_path / "planted.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    bench = run_matrix(
        load_manifest(manifest),
        {"image": "vector", "vector.audio": "vector", "vector.text": "vector"},
        aligners=["lstsq-t2i", "pivot-image"],
        csls_k=0,
        fuse_to="image",
        cache_dir=tmp_path / "cache",
        progress=False,
        unpaired=(("vector.audio", "vector.text"),),
    )
    pairwise, pivot = bench.results
    assert ("vector.audio", "vector.text") not in pairwise.pairs  # no pairs to fit it on
    assert pairwise.pairs[("vector.audio", "image")]["R@1"] > 90
    assert pivot.pairs[("vector.audio", "vector.text")]["R@1"] > 80  # unit rows: not exactly linear
    assert pivot.pairs[("vector.text", "vector.audio")]["R@1"] > 80
    assert "trained with no vector.audio–vector.text pairs" in bench.title
    columns, rows = bench.table()
    assert columns[:2] == ["query -> gallery", "chance R@10"]
    chance = {row[0]: float(row[1]) for row in rows}
    assert chance["vector.audio -> vector.text"] == 25.0  # 10 of 40 test items
    assert rows[[r[0] for r in rows].index("vector.audio -> vector.text")][2] == "–"
    assert "fit" in bench.timing() and "eval" in bench.timing()
