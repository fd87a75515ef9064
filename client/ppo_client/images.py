"""Reading the image files users bring: one place where every way a file can fail to be a usable
image (missing, unreadable, not an image, damaged, a decompression bomb) becomes a ``DataError``
that names the file and where it came from."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ppo_client.errors import DataError

MAX_PIXELS = 64 * 2**20
"""Largest image accepted (64 megapixels, e.g. 8192 x 8192): rated images are photos and renders;
anything larger is refused before it is decoded, so a small crafted file cannot take gigabytes."""


def read_image(path: Path | str, where: str = "") -> tuple[bytes, Image.Image]:
    """The file's bytes and its decoded image; ``where`` (``ratings.csv row 3``) prefixes errors."""
    path = Path(path)
    prefix = f"{where}: " if where else ""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{prefix}cannot read image {path} ({exc.strerror or exc})") from None
    except ValueError as exc:  # a path no file can have (a NUL in it)
        raise DataError(f"{prefix}cannot read image {str(path)[-60:]!r} ({exc})") from None
    return data, decode_image(data, f"{prefix}{path}")


def decode_image(data: bytes, name: str) -> Image.Image:
    """Decode ``data``; ``name`` says in errors which image it was."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS is the stricter limit
            image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise DataError(f"{name} is {width}x{height} pixels; images of more than {MAX_PIXELS // 2**20} megapixels are refused")
        image.load()
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"{name} is refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise DataError(f"{name} is not a readable image (not an image format this installation reads)") from None
    except Exception as exc:  # decoders raise many types (OSError, SyntaxError, ValueError ...) for damaged files
        raise DataError(f"{name} is not a readable image (damaged: {type(exc).__name__}: {exc})") from None
    return image


def load_rgb(path: Path | str, where: str = "") -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3]."""
    return np.asarray(read_image(path, where)[1].convert("RGB"))


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Image bytes (a stored image) as RGB uint8 [H, W, 3]."""
    return np.asarray(decode_image(data, name).convert("RGB"))
