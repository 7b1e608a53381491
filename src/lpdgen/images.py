"""Image arrays <-> files: mosaics of samples and atomic PNG writes (shared by the CLI, training
previews and the docs' pictures)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .io import PathLike, atomic_write


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2, background: int = 255) -> np.ndarray:
    """(B, H, W, C) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) uint8 mosaic, row-major.
    ``columns`` defaults to a near-square layout."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected (B, H, W, C) uint8 images, got {images.shape} {images.dtype}")
    b, h, w, c = images.shape
    columns = columns or max(1, math.ceil(math.sqrt(b)))
    rows = max(1, math.ceil(b / columns))
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), background, dtype=np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        out[top:top + h, left:left + w] = im
    return out


# File suffix -> the format Pillow writes (the suffix decides; PNG bytes under a .jpg name fool viewers).
IMAGE_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
JPEG_QUALITY = 95  # high: these are samples to inspect, and JPEG artefacts look like model artefacts


def _to_pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)


def save_png(array: np.ndarray, path: PathLike) -> Path:
    """Write an (H, W, C) or (H, W) uint8 array as a PNG, atomically."""
    img = _to_pil(array)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_image(array: np.ndarray, path: PathLike) -> Path:
    """Write an (H, W, C) or (H, W) uint8 array atomically in the format its suffix names
    (:data:`IMAGE_FORMATS`: PNG, JPEG, WebP lossless); ``ValueError`` for any other suffix."""
    fmt = IMAGE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported image type; use a name ending in {', '.join(IMAGE_FORMATS)}")
    img = _to_pil(array)
    options = {"JPEG": {"quality": JPEG_QUALITY}, "WEBP": {"lossless": True}}.get(fmt, {})
    return atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **options))
