"""Pictures of decoding: one frame per step, each showing the image decoded from the tokens known so
far (unknown cells greyed) beside the map of the cells chosen at that step - LPD at a glance.

No hook into the decoding loop is needed: a token never changes once it is generated, so the tokens
known after step k are exactly the final codes at the first ``g_1 + ... + g_k`` positions of the
image's generation order. Frames are rebuilt from a pipeline's output (codes, orders, group sizes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .images import image_grid, label_image, upscale
from .io import PathLike, atomic_write

# colours of the step map (RGB): cells known before this step, chosen at this step, still unknown
KNOWN, CHOSEN, UNKNOWN = (70, 70, 70), (255, 140, 0), (215, 215, 215)
UNKNOWN_PIXEL = 128  # the grey that hides the pixels of cells not generated yet


def known_masks(orders: torch.Tensor, group_sizes: Sequence[int]) -> torch.Tensor:
    """(K + 1, B, N) bool: which raster cells are known after 0, 1, ..., K steps."""
    b, n = orders.shape
    ends = np.cumsum([0, *group_sizes])
    rank = torch.empty_like(orders).scatter_(1, orders, torch.arange(n).expand(b, n))  # rank[b, p]: when p is made
    return torch.stack([rank < int(e) for e in ends])


def partial_codes(codes: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Codes (B, N) with every unknown cell set to the image's most frequent code (a neutral filler, so
    the decoder sees only known content plus one constant)."""
    filler = torch.mode(codes, dim=1).values[:, None].expand_as(codes)
    return torch.where(known, codes, filler)


def step_map(known_before: np.ndarray, chosen: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 map of one image's cells: known before the step, chosen at it, unknown."""
    out = np.empty((*grid, 3), dtype=np.uint8)
    out[...] = UNKNOWN
    out[known_before.reshape(grid)] = KNOWN
    out[chosen.reshape(grid)] = CHOSEN
    return out


def decoding_frames(
    codes: torch.Tensor,
    orders: torch.Tensor,
    group_sizes: Sequence[int],
    decode: Callable[[torch.Tensor], np.ndarray],
    *,
    scale: int = 4,
    captions: Sequence[str] | None = None,
    prefilled: bool = False,
) -> list[np.ndarray]:
    """One RGB frame per step (plus the finished image): each image of the batch as a row of
    [decoded known tokens | step map], with a header naming the step.

    Args:
        codes: (B, h, w) final codes; orders: (B, N); group_sizes: tokens per step.
        decode: codes (B, h, w) -> uint8 (B, H, W, C) images (e.g. ``lambda c: pipe.decode(c, "np")``).
        scale: nearest-neighbour upscaling of the frame (small images are hard to see).
        captions: optional label per image, written left of its row.
        prefilled: an edit: the first group holds the kept tokens (prefilled, not generated), shown
            first as the input with its hole; the steps are counted after it.
    """
    b, h, w = codes.shape
    flat = codes.reshape(b, h * w).cpu()
    masks = known_masks(orders.cpu(), group_sizes)  # (K + 1, B, N)
    frames = []
    for k in range(1, len(masks)):
        known, before = masks[k], masks[k - 1]
        images = decode(partial_codes(flat, known).view(b, h, w))  # (B, H, W, C)
        images = np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
        cell_h, cell_w = images.shape[1] // h, images.shape[2] // w
        hidden = np.repeat(np.repeat((~known).view(b, h, w).numpy(), cell_h, 1), cell_w, 2)
        images = images.copy()
        images[hidden] = UNKNOWN_PIXEL
        maps = np.stack([step_map(before[i].numpy(), (known[i] & ~before[i]).numpy(), (h, w)) for i in range(b)])
        maps = np.repeat(np.repeat(maps, cell_h, 1), cell_w, 2)
        rows = np.stack([images, maps], axis=1).reshape(2 * b, *images.shape[1:])  # image, map, image, map ...
        mosaic = upscale(image_grid(rows, columns=2), scale)
        done = f"({int(known[0].sum())}/{h * w})"
        if prefilled and k == 1:
            header = f"kept: {int(group_sizes[0])} tokens {done}"
        else:
            header = f"step {k - prefilled}/{len(masks) - 1 - prefilled}: +{int(group_sizes[k - 1])} tokens {done}"
        frames.append(label_image(mosaic, header, row_labels=captions, rows=b, scale=scale))
    return frames


def save_gif(frames: Sequence[np.ndarray], path: PathLike, *, ms_per_frame: int = 500, hold_last_ms: int = 2000):
    """Write RGB frames as a looping GIF, atomically; the last frame is held longer."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to write")
    images = [Image.fromarray(f) for f in frames]
    durations = [ms_per_frame] * (len(images) - 1) + [hold_last_ms]
    return atomic_write(
        path,
        lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
        ),
    )
