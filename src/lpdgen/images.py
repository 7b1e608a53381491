"""Image arrays: conversions between the model's float tensors and uint8 pixels, pictures of code
maps, mosaics of samples, atomic PNG writes, and the image file types the project reads (shared by the
tokenizer, the CLI, training previews, evaluation and the docs' pictures)."""

from __future__ import annotations

import math
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
        out[top:top + h, left:left + w] = im
    return out


def save_png(array: np.ndarray, path: PathLike) -> Path:
    """Write an (H, W, C) or (H, W) uint8 array as a PNG, atomically."""
    from PIL import Image

    img = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
