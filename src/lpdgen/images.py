"""Image arrays: conversions between the model's float tensors and uint8 pixels, pictures of code
maps, mosaics of samples, atomic PNG writes, and the image file types the project reads (shared by the
tokenizer, the CLI, training previews, evaluation and the docs' pictures)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .io import PathLike, atomic_write

# file suffixes read as images (class folders for training, sample folders for evaluation)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def uint8_to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B, H, W) or (B, H, W, C) uint8 -> (B, C, H, W) float32 in [-1, 1]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    if x.dim() != 4:
        raise ValueError(f"expected (B, H, W) or (B, H, W, C) uint8 images, got shape {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # (B, H, W, C) -> (B, C, H, W)


def float_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) float in [-1, 1] -> (B, H, W, C) uint8 (clamped, rounded)."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()  # (B, C, H, W) -> (B, H, W, C)


def code_maps(codes: torch.Tensor, vocab_size: int, scale: int = 4) -> np.ndarray:
    """(B, h, w) codes -> (B, h*scale, w*scale, 1) uint8 grey levels: a picture of the code map, for
    sample grids of runs without a tokenizer."""
    grey = (codes.float() * (255.0 / max(1, vocab_size - 1))).round().to(torch.uint8)[..., None]  # (B, h, w, 1)
    return grey.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2).cpu().numpy()


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
        out[top : top + h, left : left + w] = im
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


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, C) image (small samples are hard to see)."""
    if factor < 1:
        raise ValueError(f"upscale factor must be >= 1, got {factor}")
    return image if factor == 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
        return ImageFont.load_default()


def label_image(
    image: np.ndarray,
    title: str | None = None,
    *,
    row_labels: Sequence[str] | None = None,
    rows: int | None = None,
    scale: int = 1,
    background: int = 255,
) -> np.ndarray:
    """Add a title strip above an (H, W, C) mosaic and/or a label at the left of each of its ``rows``
    equal-height rows (``len(row_labels)`` rows by default). Returns an RGB uint8 array."""
    from PIL import Image, ImageDraw

    rgb = np.repeat(image, 3, axis=-1) if image.ndim == 3 and image.shape[-1] == 1 else image
    font = _font(max(10, 4 * scale + 4))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = measure.textbbox((0, 0), "Ag", font=font)[3] + 4
    left = 0
    if row_labels:
        left = max(measure.textbbox((0, 0), str(t), font=font)[2] for t in row_labels) + 8
    top = line_h + 2 if title else 0
    canvas = Image.new("RGB", (rgb.shape[1] + left, rgb.shape[0] + top), (background,) * 3)
    canvas.paste(Image.fromarray(rgb), (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((left + 2, 2), title, fill=(0, 0, 0), font=font)
    if row_labels:
        n = rows or len(row_labels)
        row_h = rgb.shape[0] / n
        for r, text in enumerate(row_labels[:n]):
            y = top + (r + 0.5) * row_h - line_h / 2
            draw.text((4, y), str(text), fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def labelled_grid(
    images: np.ndarray, row_labels: Sequence[str], columns: int, *, scale: int = 2, title: str | None = None
) -> np.ndarray:
    """A mosaic with ``columns`` images per row and each row's label (e.g. its class name) at the left."""
    rows = max(1, math.ceil(images.shape[0] / columns))
    if len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    return label_image(
        upscale(image_grid(images, columns=columns), scale), title, row_labels=row_labels, rows=rows, scale=scale
    )
