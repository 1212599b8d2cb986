"""Reading image files into RGB, with every failure reported as a :class:`DataError` naming the file.

- Raster formats are decoded by Pillow, completely: truncated files are errors
  (``ImageFile.LOAD_TRUNCATED_IMAGES`` is deliberately left off).
- SVG (``.svg``, ``.svgz``) is rasterised by resvg, its longest side :data:`SVG_PIXELS` pixels.
- Transparency (an alpha channel, or a palette or colour marked transparent) is flattened onto
  a background colour, white by default: the colours hidden behind transparent pixels never
  reach an encoder or a thumbnail. ``background=None`` drops the alpha channel as Pillow's
  ``convert("RGB")`` does, hidden colours and all.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, ImageColor, UnidentifiedImageError

from xmodal.data.dataset import DataError

DEFAULT_BACKGROUND = "white"
SVG_SUFFIXES = (".svg", ".svgz")
SVG_PIXELS = 512  # longest side of a rasterised SVG: above every encoder's input size


def check_background(background: str | None) -> tuple[int, int, int] | None:
    """The RGB colour of ``background`` (a CSS name or ``#rrggbb``; None stays None)."""
    if background is None:
        return None
    try:
        return ImageColor.getrgb(background)[:3]
    except ValueError:
        raise DataError(f"unknown background colour {background!r}: use a colour name or #rrggbb") from None


@contextmanager
def _reading(path: str | Path) -> Iterator[None]:
    """Turn the errors PIL, resvg and the OS raise while reading ``path`` into :class:`DataError`."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {path}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read image {path}: {error}") from error


def _regular(path: str | Path) -> None:
    """Refuse anything but a regular file (a FIFO or a device would block or never end)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(path) if not os.path.exists(path) else ValueError("not a regular file")


def check_pixels(path: str | Path, limit: int) -> None:
    """Refuse, from its header and before any decoding, an image of more than ``limit`` pixels
    (a decompression bomb); SVG is rasterised at a bounded size and passes."""
    with _reading(path):
        _regular(path)
        if Path(path).suffix.lower() in SVG_SUFFIXES:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            try:
                with Image.open(path) as image:
                    width, height = image.size
            except Image.DecompressionBombError as error:
                raise DataError(f"{path}: over the limit of {limit:,} pixels ({error})") from None
    if width * height > limit:
        raise DataError(f"{path}: {width} x {height} pixels, over the limit of {limit:,} pixels")


def _decode(path: str | Path) -> Image.Image:
    """The image at ``path`` in its own mode, fully decoded (SVG rasterised)."""
    _regular(path)
    if Path(path).suffix.lower() in SVG_SUFFIXES:
        return _rasterise(Path(path))
    with Image.open(path) as image:
        image.load()
        return image.copy()  # usable after the file is closed; keeps info such as "transparency"


_PIXELS_PER = {"px": 1.0, "pt": 4 / 3, "pc": 16.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4}  # CSS units
_ROOT = re.compile(r"<svg\b[^>]*>")
_SIZE = re.compile(r'\b(width|height)\s*=\s*(["\'])\s*([0-9.eE+-]+)\s*(px|pt|pc|in|cm|mm)\s*\2')


def _rasterise(path: Path, longest: int | None = SVG_PIXELS) -> Image.Image:
    """An SVG file rendered by resvg, its longest side ``longest`` pixels (None: its own size,
    enough to check that it renders). The root's width and height in absolute units (``128pt``)
    are given in pixels first: resvg-py refuses them otherwise."""
    import resvg_py  # only for SVG files

    data = path.read_bytes()
    text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8", errors="replace")
    root = _ROOT.search(text)
    if root is None:
        raise ValueError("no <svg> element")
    sized = _SIZE.sub(lambda m: f'{m[1]}="{float(m[3]) * _PIXELS_PER[m[4]]:g}"', root[0])
    text = text[: root.start()] + sized + text[root.end() :]

    def render(zoom: float | None = None) -> Image.Image:
        png = resvg_py.svg_to_bytes(svg_string=text, resources_dir=str(path.parent), zoom=zoom)
        return Image.open(io.BytesIO(png))

    image = render()
    width, height = image.size
    if max(width, height) == 0:
        raise ValueError("the SVG has no size")
    if longest is not None:
        image = render(longest / max(width, height))
    image.load()
    return image


def load_image(path: str | Path, background: str | None = DEFAULT_BACKGROUND) -> Image.Image:
    """Decode the image at ``path`` completely and return it in RGB mode, transparency flattened
    onto ``background`` (see the module docstring)."""
    colour = check_background(background)
    with _reading(path):
        image = _decode(path)
        return flatten(image, colour)


def flatten(image: Image.Image, colour: tuple[int, int, int] | None) -> Image.Image:
    """``image`` in RGB: transparent pixels composited over ``colour`` (None: alpha dropped)."""
    transparent = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not transparent:
        return image.convert("RGB")
    if colour is None:  # through RGBA: Pillow warns on a palette's transparency converted straight to RGB
        return image.convert("RGBA").convert("RGB")
    canvas = Image.new("RGBA", image.size, (*colour, 255))
    canvas.alpha_composite(image.convert("RGBA"))
    return canvas.convert("RGB")


def jpeg_thumbnail(path: str | Path, size: int, quality: int = 85) -> bytes:
    """JPEG bytes of the image at ``path`` shrunk to fit ``size`` x ``size`` (aspect kept),
    transparency flattened onto white as the encoders see it."""
    image = load_image(path)
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def check_image(path: str | Path) -> None:
    """Check that ``path`` decodes, cheaply: JPEGs are decoded at reduced scale (``draft``),
    SVG is rasterised.

    A decode, unlike PIL's ``verify()``, also catches damaged compressed data such as a
    truncated JPEG.
    """
    with _reading(path):
        _regular(path)
        if Path(path).suffix.lower() in SVG_SUFFIXES:
            _rasterise(Path(path), longest=None).load()
            return
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
