"""Real EfficientNet-Lite encoders on real Flickr8k images: torch and ONNX agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal.core.arrays import unit_rows
from xmodal.data import DataError
from xmodal.encoders import EncoderError, get_encoder
from xmodal.encoders.image import preprocess


@pytest.fixture(scope="module")
def test_images(flickr8k):
    return [item.values["image"][0] for item in flickr8k.split("test").items[:6]]


@pytest.mark.data
@pytest.mark.weights
def test_onnx_matches_torch_eager(lite0_onnx, models_dir, test_images):
    eager = get_encoder("efficientnet-lite0", backend="torch", models_dir=models_dir)
    a = lite0_onnx.encode(test_images, batch_size=4)
    b = eager.encode(test_images, batch_size=4)
    assert a.shape == (6, 1280) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert (models_dir / "onnx" / "efficientnet-lite0-224.onnx").is_file()


@pytest.mark.data
@pytest.mark.weights
def test_embeddings_are_batch_independent_and_deterministic(lite0_onnx, test_images):
    whole = lite0_onnx.encode(test_images, batch_size=6)
    pieces = lite0_onnx.encode(test_images, batch_size=4)
    np.testing.assert_allclose(whole, pieces, atol=1e-4)
    np.testing.assert_array_equal(whole, lite0_onnx.encode(test_images, batch_size=6))


@pytest.mark.data
@pytest.mark.weights
def test_features_separate_different_images(lite0_onnx, test_images):
    emb = lite0_onnx.encode(test_images[:2] + test_images[:1])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert unit[0] @ unit[2] > 0.9999
    assert unit[0] @ unit[1] < 0.95


def test_preprocess_resizes_and_centre_crops_any_shape():
    wide = Image.new("RGB", (400, 100), (127, 127, 127))
    out = preprocess(wide, 224)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert np.allclose(out, 0.0)  # (127 - 127) / 128


@pytest.mark.data
@pytest.mark.weights
def test_corrupt_image_names_the_file(lite0_onnx, tmp_path, test_images):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"definitely not a jpeg")
    with pytest.raises(DataError, match="cannot read image .*broken.jpg"):
        lite0_onnx.encode([test_images[0], str(broken)])


@pytest.mark.data
@pytest.mark.weights
def test_truncated_image_names_the_file(lite0_onnx, tmp_path, test_images):
    truncated = tmp_path / "truncated.jpg"
    data = Path(test_images[0]).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated.jpg"):
        lite0_onnx.encode([str(truncated)])


@pytest.mark.weights
def test_missing_image_names_the_file(lite0_onnx, tmp_path):
    with pytest.raises(DataError, match="image file not found: .*gone.jpg"):
        lite0_onnx.encode([str(tmp_path / "gone.jpg")])


def test_unknown_backend_is_rejected():
    with pytest.raises(EncoderError, match="unknown backend 'tensorrt'; choose one of onnx, torch"):
        get_encoder("efficientnet-lite0", backend="tensorrt")


@pytest.mark.data
@pytest.mark.weights
def test_concatenated_image_encoders(models_dir, test_images, lite0_onnx):
    both = get_encoder("efficientnet-lite0+efficientnet-lite1", models_dir=models_dir)
    emb = both.encode(test_images[:2])
    assert emb.shape == (2, 2560)
    np.testing.assert_allclose(np.linalg.norm(emb[:, :1280], axis=1), 1.0, atol=1e-5)
    first = lite0_onnx.encode(test_images[:2])
    np.testing.assert_allclose(emb[:, :1280], first / np.linalg.norm(first, axis=1, keepdims=True), atol=1e-5)


@pytest.mark.data
@pytest.mark.weights
def test_mirror_view_encodes_the_mirrored_file(models_dir, lite0_onnx, test_images, tmp_path):
    mirrored = tmp_path / "mirrored.png"
    Image.open(test_images[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    mirror = get_encoder("efficientnet-lite0-mirror", models_dir=models_dir)
    np.testing.assert_allclose(mirror.encode([test_images[0]]), lite0_onnx.encode([str(mirrored)]), atol=1e-4)


@pytest.mark.data
@pytest.mark.weights
def test_tta_is_the_mean_of_both_unit_views(models_dir, lite0_onnx, test_images):
    tta = get_encoder("efficientnet-lite0-tta", models_dir=models_dir)
    assert (tta.name, tta.dim, tta.modality) == ("efficientnet-lite0-tta", 1280, "image")
    plain = lite0_onnx.encode(test_images[:2])
    mirror = get_encoder("efficientnet-lite0-mirror", models_dir=models_dir).encode(test_images[:2])
    np.testing.assert_allclose(tta.encode(test_images[:2]), (unit_rows(plain) + unit_rows(mirror)) / 2, atol=1e-5)


@pytest.mark.data
@pytest.mark.weights
def test_resolution_suffix_encodes_at_that_size(models_dir, lite0_onnx, test_images, tmp_path):
    big = get_encoder("efficientnet-lite0@288", models_dir=models_dir)
    assert (big.name, big.resolution) == ("efficientnet-lite0@288", 288)
    assert big.cache_key != lite0_onnx.cache_key
    # An image already 288 x 288 is not resized, so its embedding equals the torch model's on its pixels.
    square = tmp_path / "square.png"
    Image.open(test_images[0]).convert("RGB").resize((288, 288)).save(square)
    eager = get_encoder("efficientnet-lite0@288", backend="torch", models_dir=models_dir)
    np.testing.assert_allclose(big.encode([str(square)]), eager.encode([str(square)]), atol=1e-3)
    emb = big.encode(test_images[:2])
    same = np.sum(unit_rows(emb) * unit_rows(lite0_onnx.encode(test_images[:2])), axis=1)
    assert np.all(same > 0.7) and np.all(same < 0.999)  # the same image, seen larger
    assert get_encoder("efficientnet-lite0@224", models_dir=models_dir).cache_key == lite0_onnx.cache_key
    assert get_encoder("efficientnet-lite0-tta@288", models_dir=models_dir).name == "efficientnet-lite0-tta@288"


@pytest.mark.data
@pytest.mark.weights
def test_several_resolutions_average_their_unit_embeddings(models_dir, lite0_onnx, test_images):
    both = get_encoder("efficientnet-lite0@224,288", models_dir=models_dir)
    assert (both.name, both.dim) == ("efficientnet-lite0@224,288", 1280)
    big = get_encoder("efficientnet-lite0@288", models_dir=models_dir).encode(test_images[:2])
    expected = (unit_rows(lite0_onnx.encode(test_images[:2])) + unit_rows(big)) / 2
    np.testing.assert_allclose(both.encode(test_images[:2]), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("minilm@288", "only efficientnet-lite encoders take @RESOLUTION"),
        ("efficientnet-lite0@big", "after '@' come whole numbers of pixels"),
        ("efficientnet-lite0@224,224", "distinct and comma-separated"),
        ("efficientnet-lite0@4096", "resolution must be an integer from 32 to 1024, got 4096"),
    ],
)
def test_bad_resolution_suffix_is_rejected(name, message):
    with pytest.raises(EncoderError, match=message):
        get_encoder(name)


def test_pad_keeps_the_whole_image_on_the_background():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    white = preprocess(image, 16, fit="pad", fill=(255, 255, 255))
    assert white.shape == (3, 16, 16)
    red, background = (np.array([255, 0, 0]) - 127) / 128, (255 - 127) / 128
    np.testing.assert_allclose(white[:, 8, 8], red, atol=1e-6)  # the image, shrunk to 16 x 8, centred
    np.testing.assert_allclose(white[:, 1, 8], background, atol=1e-6)  # padding above and below
    black = preprocess(image, 16, fit="pad")
    np.testing.assert_allclose(black[:, 1, 8], -127 / 128, atol=1e-6)
    np.testing.assert_allclose(preprocess(image, 16)[:, 0, 0], red, atol=1e-6)  # crop: all image


def test_image_options_in_the_name_set_fit_and_background(models_dir):
    padded = get_encoder("efficientnet-lite0-tta@352[fit=pad,background=black]", models_dir=models_dir)
    assert padded.name == "efficientnet-lite0-tta@352[fit=pad,background=black]"
    assert all(part.fit == "pad" and part.background == "black" for part in padded.parts)
    plain = get_encoder("efficientnet-lite0[background=white]", models_dir=models_dir)
    assert plain.name == "efficientnet-lite0" and "|crop|background=white" in plain.cache_key
    raw = get_encoder("efficientnet-lite0[background=none]", models_dir=models_dir)
    assert raw.background is None and raw.cache_key != plain.cache_key


@pytest.mark.data
@pytest.mark.weights
def test_stage_features_put_the_stage_pools_beside_the_head(lite0_onnx, models_dir, test_images):
    """``[features=stages]``: the plain encoder's unit embedding, then a unit block of the seven
    stages' pools, which tells images apart on its own; both backends compute it."""
    stages = get_encoder("efficientnet-lite0[features=stages]", models_dir=models_dir)
    assert stages.name == "efficientnet-lite0[features=stages]" and stages.dim == 1280 + 784
    assert stages.cache_key != lite0_onnx.cache_key and "features=stages" in stages.cache_key
    x = stages.encode(test_images, batch_size=4)
    assert x.shape == (6, 2064) and np.isfinite(x).all()
    np.testing.assert_allclose(x[:, :1280], unit_rows(lite0_onnx.encode(test_images)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(x[:, 1280:], axis=1), 1.0, atol=1e-5)
    cosines = x[:, 1280:] @ x[:, 1280:].T
    assert cosines[~np.eye(6, dtype=bool)].max() < 0.99  # the stage block is no constant
    eager = get_encoder("efficientnet-lite0[features=stages]", backend="torch", models_dir=models_dir)
    np.testing.assert_allclose(eager.encode(test_images[:2]), x[:2], atol=1e-4)
    assert (models_dir / "onnx" / "efficientnet-lite0-stages-224.onnx").is_file()
    tta = get_encoder("efficientnet-lite2-tta@300[features=stages]", models_dir=models_dir)
    assert tta.name == "efficientnet-lite2-tta@300[features=stages]" and tta.dim == 1280 + 856
    for variant, dim in (("efficientnet-lite1", 2064), ("efficientnet-lite2", 2136)):  # the widths table
        small = get_encoder(f"{variant}@64[features=stages]", backend="torch", models_dir=models_dir)
        assert small.dim == dim and small.encode(test_images[:1]).shape == (1, dim)


@pytest.mark.parametrize(
    "name, message",
    [
        ("minilm[fit=pad]", "only efficientnet-lite and whisper encoders take \\[options\\]"),
        ("efficientnet-lite0[fit=stretch]", "unknown fit 'stretch'; choose one of crop, pad"),
        ("efficientnet-lite0[colour=red]", "options are key=value pairs of fit, background"),
        ("efficientnet-lite0[fit=pad,fit=crop]", "each once"),
        ("efficientnet-lite0[background=nocolour]", "unknown background colour 'nocolour'"),
        ("efficientnet-lite0[features=cells]", "unknown features 'cells'; choose one of pool, stages"),
    ],
)
def test_bad_image_options_are_named(name, message, models_dir):
    with pytest.raises(ValueError, match=message):
        get_encoder(name, models_dir=models_dir)


@pytest.mark.weights
def test_a_transparent_stamp_embeds_as_its_flattened_copy(lite0_onnx, tmp_path):
    """What the encoder sees of an image with transparency is the image flattened on white:
    an RGBA file and its flattened RGB copy embed alike; with the hidden colour they do not."""
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    for x in range(16, 48):
        for y in range(16, 48):
            rgba.putpixel((x, y), (0, 0, 255, 255))
    rgba.save(tmp_path / "stamp.png")
    flat = Image.new("RGB", (64, 64), (255, 255, 255))
    flat.paste((0, 0, 255), (16, 16, 48, 48))
    flat.save(tmp_path / "flat.png")
    a, b = lite0_onnx.encode([str(tmp_path / "stamp.png"), str(tmp_path / "flat.png")])
    np.testing.assert_allclose(a, b, atol=1e-5)
    raw = get_encoder("efficientnet-lite0[background=none]", models_dir=tmp_path).encode([str(tmp_path / "stamp.png")])
    assert not np.allclose(raw[0], a, atol=1e-2)


@pytest.mark.data
@pytest.mark.weights
def test_a_damaged_onnx_export_is_exported_again(lite0_onnx, models_dir, test_images, tmp_path, caplog):
    import shutil

    expected = lite0_onnx.encode(test_images)  # exports into models_dir if no test did yet
    private = tmp_path / "models"
    shutil.copytree(models_dir / "onnx", private / "onnx")
    export = private / "onnx" / "efficientnet-lite0-224.onnx"
    assert export.with_name(export.name + ".sha256").is_file()
    export.write_bytes(export.read_bytes()[:1000])  # truncated
    again = get_encoder("efficientnet-lite0", models_dir=private)
    np.testing.assert_allclose(again.encode(test_images), expected, rtol=1e-5, atol=1e-5)
    assert f"ONNX export {export} has no recorded checksum or does not match it" in caplog.text
