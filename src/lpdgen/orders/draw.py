"""Pictures of generation orders (pillow only): a colour map of the step at which each cell is generated,
and a strip of small panels showing what is known after each step, as in the paper's order figures.

Not imported by ``import lpdgen.orders``, so the order math does not import an imaging library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..io import PathLike, atomic_write
from .schedules import validate_group_sizes
from .simple import grid_shape, validate_orders

# Anchor colours of a viridis-like ramp (dark purple -> blue -> teal -> green -> yellow): perceptually
# ordered, so early and late steps read apart at a glance without a plotting library.
RAMP_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
UNKNOWN = (255, 255, 255)  # cells not generated yet
KNOWN = (190, 190, 190)  # cells generated at an earlier step (strip panels)
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)


def ramp(t: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> (..., 3) uint8 RGB by piecewise-linear interpolation of :data:`RAMP_ANCHORS`."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0) * (len(RAMP_ANCHORS) - 1)
    lo = np.minimum(np.floor(t).astype(int), len(RAMP_ANCHORS) - 2)
    frac = (t - lo)[..., None]
    return np.round(RAMP_ANCHORS[lo] * (1 - frac) + RAMP_ANCHORS[lo + 1] * frac).astype(np.uint8)


def step_map(order: torch.Tensor | list[int], group_sizes: list[int], grid: int | tuple[int, int]) -> np.ndarray:
    """(h, w) int array: the step (1..K) at which each cell is generated under ``order``."""
    h, w = grid_shape(grid)
    order_t = torch.as_tensor(order).reshape(1, -1)
    validate_orders(order_t, h * w)
    sizes = validate_group_sizes(group_sizes, h * w)
    steps = np.empty(h * w, dtype=np.int64)
    steps[order_t[0].numpy()] = np.repeat(np.arange(1, len(sizes) + 1), sizes)
    return steps.reshape(h, w)


def _step_colours(num_steps: int) -> np.ndarray:
    """(K + 1, 3) colours; row k is step k's colour (row 0 unused)."""
    return np.concatenate([np.zeros((1, 3), np.uint8), ramp(np.linspace(0.0, 1.0, max(num_steps, 2))[:num_steps])])


def draw_order(
    order: torch.Tensor | list[int],
    group_sizes: list[int],
    grid: int | tuple[int, int],
    title: str = "",
    cell: int = 24,
    panel_cell: int = 5,
    panels_per_row: int = 10,
) -> Image.Image:
    """One order as a picture: the step colour map (with step numbers when cells are big enough), a
    colour bar, and one small panel per step (earlier cells grey, this step's cells in colour)."""
    h, w = grid_shape(grid)
    steps = step_map(order, group_sizes, (h, w))  # (h, w)
    k = len(group_sizes)
    colours = _step_colours(k)
    font = ImageFont.load_default()
    margin, text_h = 10, 14

    big = Image.fromarray(colours[steps]).resize((w * cell, h * cell), Image.NEAREST)  # (h cell, w cell)
    panel_w, panel_h = w * panel_cell, h * panel_cell
    rows = -(-k // panels_per_row)
    strip_w = min(k, panels_per_row) * (panel_w + margin) - margin
    width = max(w * cell, strip_w, 200) + 2 * margin
    height = margin + text_h + h * cell + margin + 12 + text_h + margin + rows * (panel_h + text_h + margin) + margin
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    y = margin
    draw.text((margin, y), title or f"{h}x{w} grid, {k} steps", fill=INK, font=font)
    y += text_h
    image.paste(big, (margin, y))
    if cell >= 14:  # step numbers on the cells
        for (cy, cx), s in np.ndenumerate(steps):
            shade = INK if colours[s].astype(int).sum() > 380 else BACKGROUND
            draw.text((margin + cx * cell + 2, y + cy * cell + 2), str(s), fill=shade, font=font)
    y += h * cell + margin

    # colour bar: step 1 .. K
    bar_w = w * cell
    bar = ramp(np.linspace(0.0, 1.0, bar_w))[None].repeat(12, axis=0)  # (12, bar_w, 3)
    image.paste(Image.fromarray(bar), (margin, y))
    y += 12
    draw.text((margin, y), "step 1", fill=INK, font=font)
    draw.text((margin + bar_w - 6 * len(f"step {k}"), y), f"step {k}", fill=INK, font=font)
    y += text_h + margin

    # strip: what is known after each step
    for step in range(1, k + 1):
        r, c = divmod(step - 1, panels_per_row)
        px, py = margin + c * (panel_w + margin), y + r * (panel_h + text_h + margin)
        panel = np.empty((h, w, 3), dtype=np.uint8)
        panel[:] = UNKNOWN
        panel[steps < step] = KNOWN
        panel[steps == step] = colours[step]
        image.paste(Image.fromarray(panel).resize((panel_w, panel_h), Image.NEAREST), (px, py))
        draw.rectangle((px - 1, py - 1, px + panel_w, py + panel_h), outline=INK)
        draw.text((px, py + panel_h + 1), str(step), fill=INK, font=font)
    return image


def save_order_picture(image: Image.Image, path: PathLike) -> Path:
    """Write a picture atomically, in the format its suffix names (.png, .jpg, ...)."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell an image format from {Path(path).name!r}; use e.g. .png")
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt))
