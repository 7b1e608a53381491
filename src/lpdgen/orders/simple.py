"""Orders that need no neighbourhood bookkeeping - raster, uniformly random, Halton - plus what every
order shares: grid shapes, per-row seeds, validation and order files.

An *order* is a (B, N) LongTensor of raster indices: row b lists the N = h*w grid cells of image b in
generation order. Orders are pure data, so the model, the sampler and the trainer all take them as
arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .. import rng
from ..io import PathLike, atomic_write

HALTON_BASES: tuple[int, int] = (2, 3)  # (rows, columns)

Seed = int | torch.Generator | None
# one seed for the whole batch, or one per row (row i is then the batch-1 order of seeds[i])
Seeds = Seed | Sequence[int | torch.Generator]


def grid_shape(grid: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``16`` -> (16, 16); ``(h, w)`` -> (h, w); ValueError on anything else."""
    if isinstance(grid, int) and not isinstance(grid, bool):
        h = w = grid
    elif isinstance(grid, (tuple, list)) and len(grid) == 2 and all(isinstance(x, int) for x in grid):
        h, w = grid
    else:
        raise ValueError(f"grid must be an int or a pair (h, w) of ints, got {grid!r}")
    if h < 1 or w < 1:
        raise ValueError(f"grid sides must be >= 1, got {(h, w)}")
    return int(h), int(w)


def make_rng(seed: Seed, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator from a seed (``None``: a fresh non-deterministic seed; a Generator passes through)."""
    return seed if isinstance(seed, torch.Generator) else rng.generator(seed, device)


def row_seeds(seed: Seeds, batch: int | None) -> tuple[list[int | torch.Generator] | None, int]:
    """``(per-row seeds or None, batch)`` from an order builder's ``seed`` and ``batch`` arguments.

    A sequence (list, tuple, range, 1-D array or tensor of ints, or a list of generators) is one seed
    per row and sets the batch (``batch`` may then be None or must equal its length); any other seed
    is shared by the batch, whose size defaults to 1. Raises ``ValueError`` on a bad batch or seed.
    """
    if isinstance(seed, (np.ndarray, torch.Tensor)):
        if seed.ndim != 1:
            raise ValueError(f"per-row seeds must be one-dimensional, got shape {tuple(seed.shape)}")
        seed = seed.tolist()
    if not isinstance(seed, (list, tuple, range)):
        batch = 1 if batch is None else batch
        _check_batch(batch)
        return None, int(batch)
    seeds = list(seed)
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, (int, np.integer, torch.Generator))]
    if bad:
        raise ValueError(f"per-row seeds must be ints or torch.Generators, got {bad[0]!r}")
    if batch is not None and batch != len(seeds):
        raise ValueError(f"got {len(seeds)} per-row seeds for batch={batch}; pass one seed per row")
    _check_batch(len(seeds))
    return seeds, len(seeds)


def _check_batch(batch: int) -> None:
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")


def _draw_rows(
    seed: Seeds, batch: int | None, device: str | torch.device, draw: Callable[[int, torch.Generator], torch.Tensor]
) -> torch.Tensor:
    """``draw(rows, generator)`` for the whole batch from one seed, or once per row from per-row seeds
    (so row i equals the batch-1 result of seed i)."""
    seeds, batch = row_seeds(seed, batch)
    if seeds is None:
        return draw(batch, make_rng(seed, device))
    return torch.cat([draw(1, make_rng(s, device)) for s in seeds])


def raster(grid: int | tuple[int, int], batch: int = 1, device: str | torch.device = "cpu") -> torch.Tensor:
    """(batch, h*w) raster orders: row-major, one token per position, as in plain autoregression."""
    h, w = grid_shape(grid)
    _check_batch(batch)
    return torch.arange(h * w, device=device).expand(batch, h * w).clone()


def random(
    grid: int | tuple[int, int], batch: int | None = None, seed: Seeds = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """(batch, h*w) uniformly random permutations, independent per row (the order LPD trains on).
    ``seed``: one seed for the batch or one per row (see :func:`row_seeds`)."""
    h, w = grid_shape(grid)
    return _draw_rows(
        seed, batch, device, lambda rows, gen: torch.rand((rows, h * w), generator=gen, device=device).argsort(dim=1)
    )


def _radical_inverse(index: torch.Tensor, base: int) -> torch.Tensor:
    """Van der Corput radical inverse of integer ``index`` in ``base`` (float64)."""
    out = torch.zeros(index.shape, dtype=torch.float64, device=index.device)
    frac = 1.0 / base
    i = index.clone()
    while bool((i > 0).any()):
        out += frac * (i % base)
        i = i // base
        frac /= base
    return out


def halton(
    grid: int | tuple[int, int], batch: int | None = None, seed: Seeds = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """(batch, h*w) Halton-sequence orders, the low-discrepancy baseline of the paper's ablation.

    Points (radical inverse base 2 -> row, base 3 -> column) are mapped to grid cells and each cell is
    ordered by the first point that lands in it, so successive tokens spread evenly over the image.
    Each row applies its own random toroidal shift (Cranley-Patterson rotation) to the points, which
    keeps the low discrepancy while making the orders of a batch differ. ``seed``: one seed for the
    batch or one per row (see :func:`row_seeds`).
    """
    h, w = grid_shape(grid)
    n = h * w
    shift = _draw_rows(
        seed, batch, device, lambda rows, gen: torch.rand((rows, 2), generator=gen, dtype=torch.float64, device=device)
    )
    batch = shift.shape[0]  # (B, 2)
    count = 8 * n
    while True:
        idx = torch.arange(1, count + 1, device=device)
        ys = (_radical_inverse(idx, HALTON_BASES[0])[None] + shift[:, :1]) % 1.0  # (B, M)
        xs = (_radical_inverse(idx, HALTON_BASES[1])[None] + shift[:, 1:]) % 1.0
        cells = (ys * h).long().clamp_(max=h - 1) * w + (xs * w).long().clamp_(max=w - 1)  # (B, M)
        first = torch.full((batch, n), count, dtype=torch.long, device=device)
        first.scatter_reduce_(1, cells, idx.expand(batch, -1) - 1, reduce="amin")
        if bool((first < count).all()):
            return first.argsort(dim=1)
        count *= 2  # some cell not hit yet: more points


def known_cells(known, grid: int | tuple[int, int], batch: int | None = None) -> np.ndarray:
    """Editing's known cells as a (B, N) bool array, from one mask for the whole batch, (h, w) or (N,), or
    one per row, (B, h, w) or (B, N) (``batch`` None: its rows). Every row must know equally many
    cells, so that the unknown cells of a batch share one schedule; ``ValueError`` otherwise."""
    h, w = grid_shape(grid)
    n = h * w
    arr = np.asarray(known.detach().cpu() if isinstance(known, torch.Tensor) else known)
    if arr.dtype != np.bool_:
        raise ValueError(f"known must be a boolean mask, got dtype {arr.dtype}")
    if arr.ndim in (2, 3) and arr.shape[-2:] == (h, w):
        arr = arr.reshape(*arr.shape[:-2], n)
    if arr.ndim not in (1, 2) or arr.shape[-1] != n:
        raise ValueError(
            f"known must be a mask of the {h}x{w} cells: (h, w), (N,), (B, h, w) or (B, N), got shape {arr.shape}"
        )
    rows = arr.reshape(-1, n)
    batch = len(rows) if batch is None else batch
    if len(rows) not in (1, batch):
        raise ValueError(f"known has {len(rows)} rows for a batch of {batch}")
    counts = rows.sum(axis=1)
    if (counts != counts[0]).any():
        raise ValueError(f"every row must know equally many cells, got counts {sorted(set(counts.tolist()))}")
    return np.broadcast_to(rows, (batch, n)).copy()


def known_first(orders: torch.Tensor, known, grid: int | tuple[int, int]) -> torch.Tensor:
    """``orders`` (B, N) rearranged for editing: the known cells first, in raster order, then the
    other cells in the order they had. ``known``: as :func:`known_cells`."""
    b, n = orders.shape
    mask = torch.from_numpy(known_cells(known, grid, b)).to(orders.device)
    is_known = torch.gather(mask, 1, orders)  # (B, N) in generation order
    rank = torch.where(is_known, orders, n + torch.arange(n, device=orders.device))  # known by cell, rest by position
    return torch.gather(orders, 1, rank.argsort(dim=1))


def validate_orders(orders: torch.Tensor, num_tokens: int) -> None:
    """Raise ``ValueError`` unless ``orders`` is a (B, N) integer tensor whose rows are permutations of
    0..N-1. Vectorised (one sort), cheap enough to call on every model call."""
    if not isinstance(orders, torch.Tensor):  # bad input is a ValueError project-wide (clean CLI errors)
        raise ValueError(f"orders must be a torch.Tensor, got {type(orders).__name__}")  # noqa: TRY004
    if orders.dim() != 2 or orders.shape[1] != num_tokens:
        raise ValueError(f"orders must have shape (B, {num_tokens}), got {tuple(orders.shape)}")
    if orders.dtype.is_floating_point or orders.dtype.is_complex or orders.dtype == torch.bool:
        raise ValueError(f"orders must be an integer tensor, got {orders.dtype}")
    expected = torch.arange(num_tokens, device=orders.device)
    bad = (orders.sort(dim=1).values != expected).any(dim=1)  # (B,)
    if bad.any():
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"orders rows {rows} are not permutations of 0..{num_tokens - 1}")


def save_orders(orders: torch.Tensor, path: PathLike) -> Path:
    """Write (B, N) orders atomically as ``.json`` (a list of lists of raster indices, the format of the
    published pre-generated order files) or ``.npy`` (int64), chosen by the suffix."""
    path = Path(path)
    if orders.dim() != 2:
        raise ValueError(f"orders must have shape (B, N), got {tuple(orders.shape)}")
    array = orders.detach().cpu().numpy().astype(np.int64)
    suffix = path.suffix.lower()
    if suffix == ".json":

        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                json.dump(array.tolist(), f, separators=(",", ":"))
                f.write("\n")
    elif suffix == ".npy":

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, array)
    else:
        raise ValueError(f"orders file must end in .json or .npy, got {path.name!r}")
    return atomic_write(path, write)


def load_orders(path: PathLike) -> torch.Tensor:
    """Read orders written by :func:`save_orders` (or a published JSON order file) as a (B, N)
    LongTensor, checking that every row is a permutation."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"orders file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(path.read_text())
            orders = torch.tensor(data, dtype=torch.long)
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{path} is not a JSON list of equal-length integer lists: {e}") from None
    elif suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path} is not a valid .npy file: {e}") from None
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{path} holds {array.dtype}, expected integers")
        orders = torch.from_numpy(array.astype(np.int64))
    else:
        raise ValueError(f"orders file must end in .json or .npy, got {path.name!r}")
    if orders.dim() != 2:
        raise ValueError(f"{path} must hold a list of orders (B, N), got shape {tuple(orders.shape)}")
    validate_orders(orders, orders.shape[1])
    return orders
