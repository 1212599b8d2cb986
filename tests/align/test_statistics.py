"""Additive statistics: shards add up, and a fit from them is the fit on all the rows."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.align import Aligner, CCAAligner, IdentityAligner, LeastSquaresAligner, PivotAligner, ProcrustesAligner
from xmodal.align.statistics import Statistics
from xmodal.store import write_shards


def paired(n: int = 600, seed: int = 0) -> dict[str, np.ndarray]:
    """Text and image rows with a planted linear relation plus noise (float32, like embeddings)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 12))
    text = latent @ rng.normal(size=(12, 24)) + 0.3 * rng.normal(size=(n, 24))
    image = latent @ rng.normal(size=(12, 40)) + 0.3 * rng.normal(size=(n, 40)) + 2.0
    return {"text": text.astype(np.float32), "image": image.astype(np.float32)}


ALIGNERS = [
    lambda: CCAAligner(n_components=10, reg=0.1, weight_power=0.5),
    lambda: LeastSquaresAligner("text", "image", ridge=1.0),
    lambda: LeastSquaresAligner("image", "text", ridge=0.0, center=False, normalize=False),
    lambda: ProcrustesAligner("text", "image", n_components=16, scale=True),
    lambda: ProcrustesAligner("image", "text"),
]


def assert_same_map(one: Aligner, other: Aligner, data: dict[str, np.ndarray]) -> None:
    for m, x in data.items():
        a, b = one.transform(x[:50], m), other.transform(x[:50], m)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * np.abs(a).max())  # float32 products


def test_statistics_of_shards_add_up_to_those_of_all_rows():
    data = paired()
    whole = Statistics.from_arrays(data)
    shards = [Statistics.from_arrays({m: x[i::3] for m, x in data.items()}) for i in range(3)]
    summed = (shards[0] + shards[1]) + shards[2]
    assert summed.count == whole.count == 600 and summed.modalities == ("text", "image")
    for key, product in whole.products.items():
        np.testing.assert_allclose(summed.products[key], product, rtol=1e-4)  # float32 products, float64 sums
    np.testing.assert_allclose(
        summed.covariance("image", "text"), np.cov(data["image"].T, data["text"].T, bias=True)[:40, 40:], atol=1e-4
    )
    with pytest.raises(ValueError, match="the modalities, their order and dimensions must match"):
        whole + Statistics.from_arrays({"image": data["image"], "text": data["text"]})


@pytest.mark.parametrize("make", ALIGNERS)
def test_fit_from_statistics_and_partial_fit_over_shards_equal_fit(make, tmp_path):
    data = paired()
    fitted = make().fit(data)
    shards = [{m: x[i * 60 : (i + 1) * 60] for m, x in data.items()} for i in range(10)]
    from_statistics = make()
    total = sum((from_statistics.statistics(s) for s in shards[1:]), from_statistics.statistics(shards[0]))
    assert_same_map(from_statistics.fit_statistics(total), fitted, data)
    streamed = make()
    for shard in shards[:5]:
        streamed.partial_fit(shard)
    resumed = Aligner.load(streamed.save(tmp_path / "half"))  # the statistics travel with the aligner
    for shard in shards[5:]:
        resumed.partial_fit({m: shard[m] for m in reversed(list(shard))})  # key order does not matter
    assert_same_map(resumed, fitted, data)
    assert int(resumed.statistics_["count"]) == 600 and not hasattr(fitted, "statistics_")


def test_statistics_save_and_load(tmp_path):
    stats = Statistics.from_arrays(paired(n=50))
    loaded = Statistics.load(stats.save(tmp_path / "stats.npz"))
    assert loaded.modalities == stats.modalities and loaded.count == 50
    for key in stats.products:
        np.testing.assert_array_equal(loaded.products[key], stats.products[key])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz: cannot read statistics"):
        Statistics.load(tmp_path / "bad.npz")


def test_statistics_refuse_what_they_cannot_serve():
    data = paired(n=40)
    with pytest.raises(ValueError, match="PivotAligner is not fitted from additive statistics"):
        PivotAligner("image").partial_fit(data)
    cca = CCAAligner(n_components=4).partial_fit(data)
    with pytest.raises(ValueError, match=r"partial_fit continues a fit of \['text', 'image'\]"):
        cca.partial_fit({"text": data["text"], "audio": data["image"]})
    with pytest.raises(ValueError, match="IdentityAligner needs modalities of equal dimension"):
        IdentityAligner().fit_statistics(Statistics.from_arrays(data))
    with pytest.raises(ValueError, match="statistics need two or more row-paired modalities"):
        Statistics.from_arrays({"text": data["text"], "image": data["image"][:10]})


def test_statistics_streamed_from_shards_equal_those_of_the_arrays(tmp_path):
    data = paired(n=700)
    shards = {m: write_shards(tmp_path / m, [x[:250], x[250:600], x[600:]]) for m, x in data.items()}
    streamed = Statistics.from_shards(shards, block_rows=128)  # blocks across shard borders
    whole = Statistics.from_arrays(data)
    assert streamed.count == 700 and streamed.modalities == ("text", "image")
    for key, product in whole.products.items():  # float32 products of 700 rows: rounding of 1e-8 of the scale
        np.testing.assert_allclose(streamed.products[key], product, rtol=0, atol=1e-6 * np.abs(product).max())
    for m in data:
        np.testing.assert_allclose(streamed.sums[m], whole.sums[m], rtol=1e-9, atol=1e-6)


def test_rows_pair_shards_of_different_lengths_and_the_aligner_preprocesses_each_block(tmp_path):
    data = paired(n=300)
    captions = np.repeat(data["text"], 2, axis=0) + 0.01  # two "captions" per image
    shards = {
        "text": write_shards(tmp_path / "text", [captions[:333], captions[333:]]),
        "image": write_shards(tmp_path / "image", [data["image"]]),
    }
    rows = {"text": np.arange(600), "image": np.arange(600) // 2}
    with pytest.raises(ValueError, match="different lengths"):
        Statistics.from_shards(shards)
    for make in ALIGNERS:
        aligner = make()
        streamed = aligner.shard_statistics(shards, rows)
        expected = aligner.statistics({"text": captions, "image": data["image"][rows["image"]]})
        assert streamed.count == expected.count == 600
        for key, product in expected.products.items():
            np.testing.assert_allclose(streamed.products[key], product, rtol=0, atol=1e-6 * np.abs(product).max())
        fitted = make().fit_statistics(streamed)
        assert_same_map(fitted, make().fit({"text": captions, "image": data["image"][rows["image"]]}), data)


def test_a_ray_cluster_accumulates_the_same_statistics(tmp_path, ray_engine):
    data = paired(n=900)
    shards = {m: write_shards(tmp_path / m, [x[i : i + 200] for i in range(0, 900, 200)]) for m, x in data.items()}
    local = Statistics.from_shards(shards, block_rows=100)
    ray = Statistics.from_shards(shards, block_rows=100, engine=ray_engine)
    assert ray.count == local.count == 900
    for key, product in local.products.items():  # the same blocks in order; BLAS threads may round the last bit
        np.testing.assert_allclose(ray.products[key], product, rtol=0, atol=1e-7 * np.abs(product).max())


def test_statistics_of_a_hard_plan_are_those_of_its_pairs():
    rng = np.random.default_rng(0)
    text, image = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    match = np.array([0, 3, 3, 1, 2, 0])  # each text's image
    plan = np.zeros((6, 4))
    plan[np.arange(6), match] = 1 / 6
    soft = Statistics.from_plan({"text": text, "image": image}, plan, 6)
    hard = Statistics.from_arrays({"text": text, "image": image[match]})
    assert soft.count == hard.count == 6
    for key in hard.products:
        np.testing.assert_allclose(soft.products[key], hard.products[key], rtol=1e-5)
    np.testing.assert_allclose(soft.mean("image"), hard.mean("image"), rtol=1e-5)
    with pytest.raises(ValueError, match="must sum to 1"):
        Statistics.from_plan({"text": text, "image": image}, plan * 2, 6)
    with pytest.raises(ValueError, match="6 x 4 matrix"):
        Statistics.from_plan({"text": text, "image": image}, plan.T, 6)
