"""`xmodal shard` and `xmodal fit FOLDER`: a split encoded out of core, in this process or on
a Ray cluster, fits the model that the split itself fits."""

from __future__ import annotations

import json

import numpy as np

from xmodal.model import Model


def manifest(path, n: int = 300, seed: int = 0):
    """Precomputed text and image vectors with a planted linear relation, two captions per item;
    the last third of the items are the test split."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 150))  # full rank: every map is well posed
    text_map, image_map = rng.normal(size=(150, 140)), rng.normal(size=(150, 160))
    header = {"xmodal": "manifest", "modalities": {"text": "vector", "image": "vector"}}
    lines = [json.dumps(header)]
    for i in range(n):
        captions = [(latent[i] @ text_map + 20.0 * rng.normal(size=140)).tolist() for _ in range(2)]
        image = (latent[i] @ image_map + 20.0 * rng.normal(size=160)).tolist()
        split = "train" if i < n - n // 3 else "test"
        lines.append(json.dumps({"id": str(i), "split": split, "text": captions, "image": image}))
    path.write_text("\n".join(lines) + "\n")
    return path


def probe_map(path) -> np.ndarray:
    return Model.load(path).transform(np.random.default_rng(1).normal(size=(7, 140)), "text")


def test_a_sharded_split_fits_the_model_of_the_split_on_either_engine(tmp_path, xmodal, ray_engine):
    data = manifest(tmp_path / "m.jsonl")
    sharded = xmodal("shard", data, "--out", tmp_path / "enc", "--shard-rows", 64)
    assert sharded.exit_code == 0, sharded.output
    assert "400 text, 200 image rows" in sharded.output
    for aligner in ("cca-128-weighted", "procrustes-t2i", "lstsq-t2i"):
        direct = xmodal("fit", data, "--aligner", aligner, "--out", tmp_path / "direct.npz", "--cache", tmp_path / "c",
                        "--updatable")  # fmt: skip
        assert direct.exit_code == 0, direct.output
        expected = Model.load(tmp_path / "direct.npz")
        for engine in (["--engine", "local"], ["--engine", "ray", "--workers", "2"]):
            fitted = xmodal("fit", tmp_path / "enc", "--aligner", aligner, "--out", tmp_path / "s.npz", "--updatable",
                            *engine)  # fmt: skip
            assert fitted.exit_code == 0, fitted.output
            assert "on 400 pairs of text, image" in fitted.output
            model = Model.load(tmp_path / "s.npz")
            for key, value in expected.aligner.statistics_.items():  # the same sums of the same pairs
                scale = np.abs(value).max()
                np.testing.assert_allclose(model.aligner.statistics_[key], value, rtol=0, atol=1e-6 * scale)
            mapped, reference = probe_map(tmp_path / "s.npz"), probe_map(tmp_path / "direct.npz")
            np.testing.assert_allclose(mapped, reference, atol=1e-4 * np.abs(reference).max())
    model = Model.load(tmp_path / "s.npz")
    assert model.about["encoded"] == str(tmp_path / "enc") and model.about["pairs"] == 400
    assert xmodal("shard", data, "--split", "test", "--out", tmp_path / "test", "--shard-rows", 64).exit_code == 0
    streamed = xmodal("eval", tmp_path / "test", "--model", tmp_path / "s.npz", "--json")
    in_memory = xmodal("eval", data, "--model", tmp_path / "s.npz", "--json", "--cache", tmp_path / "c")
    assert streamed.exit_code == in_memory.exit_code == 0, streamed.output + in_memory.output
    metrics = json.loads(streamed.output)
    assert metrics == json.loads(in_memory.output) and set(metrics) >= {"t2i/R@1", "i2t/R@10", "t2i/medR"}
    assert 0 < metrics["t2i/R@1"] < 100  # a real ranking: neither perfect nor empty


def test_sharded_fits_refuse_what_they_cannot_do(tmp_path, xmodal):
    data = manifest(tmp_path / "m.jsonl", n=60)
    assert xmodal("shard", data, "--out", tmp_path / "enc", "--shard-rows", 16).exit_code == 0
    out = ["--out", tmp_path / "x.npz"]

    def error(*args):
        result = xmodal(*args)
        assert result.exit_code == 2, result.output
        return " ".join(result.output.split())

    assert "--auto and --bridge need arrays" in error("fit", tmp_path / "enc", "--auto", *out)
    assert "--auto and --bridge need arrays" in error("fit", tmp_path / "enc", "--bridge", *out)
    bridged = tmp_path / "bridged.npz"
    assert xmodal("fit", data, "--aligner", "procrustes-t2i", "--bridge", "--out", bridged).exit_code == 0
    assert "has a bridge, which the out-of-core evaluation does not apply" in error(
        "eval", tmp_path / "enc", "--model", bridged
    )
    assert "HeadAligner is not fitted from statistics" in error(
        "fit", tmp_path / "enc", "--aligner", "head-linear", *out
    )
    assert "encode the split with it first" in error("fit", data, "--engine", "ray", *out)
    assert "unknown engine 'spark'" in error("shard", data, "--out", tmp_path / "e2", "--engine", "spark")
    shard = tmp_path / "enc" / "image" / "000001.npy"
    damaged = bytearray(shard.read_bytes())
    damaged[-3] ^= 0x10
    shard.write_bytes(bytes(damaged))
    assert f"shard{shard}iscorrupt" in error("fit", tmp_path / "enc", *out).replace(" ", "")
    (tmp_path / "enc" / "encoding.json").write_text("{}")
    assert "is not an xmodal-encoded/1 description" in error("fit", tmp_path / "enc", *out)


def test_a_sample_of_an_encoded_split_holds_whole_items_and_the_analysis_measures_it(tmp_path, xmodal):
    from xmodal.data import load_dataset
    from xmodal.store import EncodedSplit

    data = manifest(tmp_path / "m.jsonl")
    assert xmodal("shard", data, "--out", tmp_path / "enc", "--shard-rows", 64).exit_code == 0
    encoded = EncodedSplit.open(tmp_path / "enc")
    sample = encoded.sample("text", "image", 30, seed=5)
    assert len(sample.image) == 30 and len(sample.text) == 60  # whole items: both captions of each
    train = load_dataset(str(data)).split("train")
    vectors = {m: train.vectors[m][np.asarray(train.flatten(m).values, dtype=np.int64)] for m in ("text", "image")}
    chosen = [int(np.flatnonzero((vectors["image"] == row).all(axis=1))[0]) for row in sample.image]
    assert chosen == sorted(chosen)
    for t_row, i_row in zip(*sample.pair_rows()):  # every caption sits with its own image
        caption = int(np.flatnonzero((vectors["text"] == sample.text[t_row]).all(axis=1))[0])
        assert caption // 2 == chosen[sample.image_items[i_row]]
    np.testing.assert_array_equal(encoded.sample("text", "image", 30, seed=5).text, sample.text)
    assert not np.array_equal(encoded.sample("text", "image", 30, seed=6).text, sample.text)
    fitted = xmodal("fit", tmp_path / "enc", "--aligner", "lstsq-t2i", "--out", tmp_path / "s.npz")
    assert fitted.exit_code == 0, fitted.output
    analysed = xmodal("analyze", tmp_path / "enc", "--model", tmp_path / "s.npz", "--limit", 50)
    assert analysed.exit_code == 0, analysed.output
    assert "50 sampled items" in " ".join(analysed.output.split()) and "CKA" in analysed.output
    refused = xmodal("analyze", tmp_path / "enc")
    assert refused.exit_code == 2 and "(--model)" in refused.output
