"""Editing inputs as token grids: images to check, pixel masks and boxes to token-cell masks.

Why a module of its own: inpainting, outpainting and class-conditional editing all reduce to one
question - which token cells are regenerated - and the pipeline, the CLI and the docs' pictures must
answer it the same way. The rule: a token cell is regenerated when any pixel of its square is masked
(True = regenerate), so a box always covers whole cells and nothing the user marked survives
half-kept. Everything here is a pure function of arrays; decoding lives in
:meth:`lpdgen.pipeline.LPDPipeline.inpaint`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, x1 / y1 exclusive


def image_array(images, size: tuple[int, int], channels: int) -> np.ndarray:
    """``images`` (a list of PIL images, or a uint8 array / tensor (B, H, W) or (B, H, W, C)) as one
    (B, H, W, C) uint8 array of the tokenizer's ``size`` (H, W) and ``channels``; ``ValueError``
    naming what is wrong otherwise. PIL images are converted to L or RGB as ``channels`` asks."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given")
        mode = "L" if channels == 1 else "RGB"
        try:
            arrays = [np.asarray(im.convert(mode)) for im in images]
        except AttributeError:
            raise ValueError("images must be a list of PIL images or a uint8 array (B, H, W[, C])") from None
        sizes = {a.shape[:2] for a in arrays}
        if len(sizes) != 1:
            raise ValueError(f"images differ in size: {sorted(sizes)}")
        arr = np.stack(arrays)
    else:
        arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"images must be (B, H, W) or (B, H, W, C), got shape {arr.shape}")
    if arr.shape[1:3] != tuple(size):
        how = (
            f": pad them first, e.g. lpdgen.editing.pad_to(images, {tuple(size)})"
            if arr.shape[1] <= size[0] and arr.shape[2] <= size[1]
            else ""
        )
        raise ValueError(
            f"images are {arr.shape[2]}x{arr.shape[1]} pixels; this model edits {size[1]}x{size[0]} images{how}"
        )
    if arr.shape[3] != channels:
        raise ValueError(f"images have {arr.shape[3]} channels; this model's tokenizer takes {channels}")
    return arr


def pad_to(images: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Center ``images`` (B, H, W) or (B, H, W, C) on a zero (black / False) canvas of ``size`` (H, W);
    returns the padded array and the (top, left) offset of the originals in it.

    Why: the embedded model was trained on 28x28 Fashion-MNIST padded with black to 32x32
    (:class:`lpdgen.data.FashionMNIST`), so a raw 28x28 image becomes an input this way, and a mask or
    box drawn on the original moves by the same offset. ``ValueError`` if an image is larger than ``size``.
    """
    arr = np.asarray(images)
    h, w = arr.shape[1:3]
    if h > size[0] or w > size[1]:
        raise ValueError(f"images of {w}x{h} pixels do not fit in {size[1]}x{size[0]}")
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    out = np.zeros((arr.shape[0], *size, *arr.shape[3:]), dtype=arr.dtype)
    out[:, top : top + h, left : left + w] = arr
    return out, (top, left)


def check_keeps_a_cell(keep: np.ndarray, cell: int, what: str = "the box to keep") -> None:
    """Refuse an outpainting region that covers no whole token cell in some image: every cell would be
    regenerated, so the "edit" would be a fresh image that ignores the input, which is never what a
    small box means. ``keep``: (B, H, W) bool pixels to keep; ``cell``: the tokenizer's downsampling."""
    b, h, w = keep.shape
    regenerate = cell_mask(~np.asarray(keep, dtype=bool), b, (h // cell, w // cell), cell)
    if bool(regenerate.flatten(1).all(dim=1).any()):
        raise ValueError(
            f"{what} covers no whole token cell ({cell}x{cell} pixels, on a grid starting at 0, 0), so "
            f"nothing of the image would be kept; keep at least one cell, e.g. the box 0 0 {cell} {cell}"
        )


def cell_mask(mask, batch: int, grid: tuple[int, int], cell: int) -> torch.Tensor:
    """(B, h, w) bool: the token cells to regenerate, from ``mask`` (True = regenerate) at pixel
    resolution (B, H, W) with H, W = grid * ``cell`` (a cell is regenerated when any of its pixels is
    masked) or at token resolution (B, h, w); a 2-D mask applies to every image."""
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.dtype != np.bool_:
        raise ValueError(f"mask must be boolean (True = regenerate), got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.broadcast_to(arr, (batch, *arr.shape))
    h, w = grid
    pixels = (h * cell, w * cell)
    if arr.ndim != 3 or arr.shape[0] != batch or arr.shape[1:] not in (tuple(grid), pixels):
        raise ValueError(
            f"mask must be (B, H, W) = ({batch}, {pixels[0]}, {pixels[1]}) pixels or (B, h, w) = "
            f"({batch}, {h}, {w}) token cells, got shape {arr.shape}"
        )
    if arr.shape[1:] == pixels and cell > 1:
        arr = arr.reshape(batch, h, cell, w, cell).any(axis=(2, 4))  # (B, h, c, w, c) -> (B, h, w)
    return torch.from_numpy(np.array(arr, dtype=bool))


def check_box(box: Sequence[int], size: tuple[int, int]) -> Box:
    """``box`` (x0, y0, x1, y1) as ints with 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H (``size`` = (H, W))."""
    if len(box) != 4 or any(isinstance(v, bool) or int(v) != v for v in box):
        raise ValueError(f"a box is four integers x0 y0 x1 y1, got {tuple(box)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    height, width = size
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"box {(x0, y0, x1, y1)} is out of range: need 0 <= x0 < x1 <= {width} and "
            f"0 <= y0 < y1 <= {height} (pixels, x1 and y1 exclusive)"
        )
    return x0, y0, x1, y1


def box_mask(boxes: Sequence[int] | Sequence[Sequence[int]], batch: int, size: tuple[int, int]) -> np.ndarray:
    """(B, H, W) bool pixel mask, True inside the box: one box (x0, y0, x1, y1) for every image, or one
    per image."""
    many = len(boxes) > 0 and not isinstance(boxes[0], (int, np.integer))
    per_image = list(boxes) if many else [boxes] * batch
    if len(per_image) != batch:
        raise ValueError(f"got {len(per_image)} boxes for {batch} images")
    out = np.zeros((batch, *size), dtype=bool)
    for i, box in enumerate(per_image):
        x0, y0, x1, y1 = check_box(box, size)
        out[i, y0:y1, x0:x1] = True
    return out
