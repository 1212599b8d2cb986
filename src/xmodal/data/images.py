"""Reading image files, with every failure reported as a :class:`DataError` naming the file.

Truncated files are errors: ``ImageFile.LOAD_TRUNCATED_IMAGES`` is deliberately left off.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from xmodal.data.dataset import DataError


@contextmanager
def _reading(path: str | Path) -> Iterator[None]:
    """Turn the errors PIL and the OS raise while reading ``path`` into :class:`DataError`."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {path}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read image {path}: {error}") from error


def load_image(path: str | Path) -> Image.Image:
    """Decode the image at ``path`` completely and return it in RGB mode."""
    with _reading(path), Image.open(path) as image:
        image.load()
        return image.convert("RGB")


def jpeg_thumbnail(path: str | Path, size: int, quality: int = 85) -> bytes:
    """JPEG bytes of the image at ``path`` shrunk to fit ``size`` x ``size`` (aspect kept)."""
    image = load_image(path)
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def check_image(path: str | Path) -> None:
    """Check that ``path`` decodes, cheaply: JPEGs are decoded at reduced scale (``draft``).

    A decode, unlike PIL's ``verify()``, also catches damaged compressed data such as a
    truncated JPEG.
    """
    with _reading(path), Image.open(path) as image:
        image.draft("RGB", (64, 64))
        image.load()
