"""Image loading: real Flickr8k files, other modes, and missing, corrupt and truncated files."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from xmodal.data import DataError, load_image
from xmodal.data.images import check_image


@pytest.fixture
def real_image(data_root: Path) -> Path:
    return data_root / "flickr8k" / "Images" / "2513260012_03d33305cf.jpg"


@pytest.mark.data
def test_loads_a_real_image_fully_decoded_in_rgb(tmp_path, real_image):
    path = tmp_path / "copy.jpg"
    shutil.copy(real_image, path)
    check_image(path)
    image = load_image(str(path))
    path.unlink()  # decoded already: the pixels no longer need the file
    assert (image.mode, image.size) == ("RGB", (224, 224))
    assert len(image.tobytes()) == 224 * 224 * 3


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_other_modes_become_rgb(tmp_path, mode):
    path = tmp_path / "image.png"
    Image.new(mode, (8, 6)).save(path)
    image = load_image(path)
    assert (image.mode, image.size) == ("RGB", (8, 6))


@pytest.mark.parametrize("read", [load_image, check_image])
def test_missing_file(tmp_path, read):
    path = tmp_path / "nope.jpg"
    with pytest.raises(DataError, match="image file not found: " + re.escape(str(path))):
        read(path)


@pytest.mark.parametrize("read", [load_image, check_image])
def test_random_bytes(tmp_path, read):
    path = tmp_path / "noise.jpg"
    path.write_bytes(os.urandom(4096))
    message = f"cannot read image {re.escape(str(path))}: not a recognised image format"
    with pytest.raises(DataError, match=message):
        read(path)


@pytest.mark.parametrize("read", [load_image, check_image])
def test_directory(tmp_path, read):
    with pytest.raises(DataError, match=f"cannot read image {re.escape(str(tmp_path))}"):
        read(tmp_path)


@pytest.mark.data
@pytest.mark.parametrize("read", [load_image, check_image])
def test_truncated_jpeg_is_an_error(tmp_path, read, real_image):
    data = real_image.read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"cannot read image {re.escape(str(path))}: .*truncated"):
        read(path)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


# --- transparency, SVG ------------------------------------------------------------------


def _transparent_png(path: Path) -> Path:
    """4x4: transparent red everywhere (the hidden colour), one opaque blue pixel at (0, 0)."""
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    image.putpixel((1, 0), (0, 0, 255, 128))
    image.save(path)
    return path


def test_transparency_is_flattened_onto_white_by_default(tmp_path):
    image = load_image(_transparent_png(tmp_path / "a.png"))
    assert image.mode == "RGB"
    assert image.getpixel((2, 2)) == (255, 255, 255)  # not the hidden red
    assert image.getpixel((0, 0)) == (0, 0, 255)
    assert image.getpixel((1, 0)) == pytest.approx((127, 127, 255), abs=1)  # half blue over white


def test_another_background_or_none(tmp_path):
    path = _transparent_png(tmp_path / "a.png")
    assert load_image(path, "black").getpixel((2, 2)) == (0, 0, 0)
    assert load_image(path, "#102030").getpixel((2, 2)) == (16, 32, 48)
    assert load_image(path, None).getpixel((2, 2)) == (255, 0, 0)  # alpha dropped: the hidden colour
    with pytest.raises(DataError, match="unknown background colour 'nocolour'"):
        load_image(path, "nocolour")


def test_palette_transparency_is_flattened(tmp_path):
    path = tmp_path / "p.png"
    image = Image.new("P", (3, 3), 0)
    image.putpalette([0, 255, 0, 10, 20, 30] + [0] * 762)
    image.putpixel((0, 0), 1)
    image.save(path, transparency=0)
    assert load_image(path).getpixel((2, 2)) == (255, 255, 255)
    assert load_image(path).getpixel((0, 0)) == (10, 20, 30)


def test_svg_is_rasterised_at_512_on_its_longest_side(tmp_path):
    path = tmp_path / "stamp.svg"
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" viewBox="0 0 40 20">'
        '<rect width="20" height="20" fill="#ff0000"/></svg>'
    )
    image = load_image(path)
    assert (image.mode, image.size) == ("RGB", (512, 256))
    assert image.getpixel((10, 10)) == (255, 0, 0) and image.getpixel((400, 100)) == (255, 255, 255)
    check_image(path)


@pytest.mark.parametrize("read", [load_image, check_image])
def test_a_broken_svg_names_the_file(tmp_path, read):
    path = tmp_path / "broken.svg"
    path.write_text("<svg")
    with pytest.raises(DataError, match=f"cannot read image {re.escape(str(path))}"):
        read(path)


def test_an_svg_sized_in_points_renders(tmp_path):
    """Inkscape's width="128pt" (resvg-py alone refuses it): 128 pt = 170.7 px, then 512 px."""
    path = tmp_path / "pt.svg"
    path.write_text(
        '<?xml version="1.0"?>\n<svg width="128pt" height="64pt" xmlns="http://www.w3.org/2000/svg">'
        '<rect width="85.3" height="85.3" fill="#0000ff"/></svg>'
    )
    image = load_image(path)
    assert image.size[0] == 512 and abs(image.size[1] - 256) <= 1  # 64 pt = 85.3 px, times 3
    assert image.getpixel((100, 100)) == (0, 0, 255) and image.getpixel((400, 100)) == (255, 255, 255)
