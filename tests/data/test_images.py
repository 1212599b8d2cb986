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
