"""One entry point for every order type, for callers that take the type as a setting (CLI, pipeline)."""

from __future__ import annotations

import torch

from .locality import PUBLISHED_RHO, PUBLISHED_TAU, locality_aware
from .simple import Seeds, halton, known_first, random, raster, row_seeds

ORDER_TYPES: tuple[str, ...] = ("locality", "raster", "random", "halton")


def build_orders(
    kind: str,
    grid: int | tuple[int, int],
    group_sizes: list[int] | None = None,
    batch: int | None = None,
    seed: Seeds = None,
    tau: float = PUBLISHED_TAU,
    rho: float = PUBLISHED_RHO,
    device: str | torch.device = "cpu",
    known=None,
) -> torch.Tensor:
    """(batch, h*w) orders of type ``kind`` in :data:`ORDER_TYPES` (``group_sizes``, ``tau`` and ``rho``
    matter to "locality" only). ``seed`` is one seed for the batch or one per row, for every type: row
    i of a per-row call equals the batch-1 order of ``seed[i]``.

    ``known`` (editing): a mask of known cells (:func:`~lpdgen.orders.simple.known_cells`); every row
    then lists them first, in raster order, followed by the unknown cells in the order of ``kind``
    (the locality-aware order treats the known cells as generated before step 1; the others keep
    their order of the unknown cells). ``group_sizes`` then sum to the unknown count."""
    if kind not in ORDER_TYPES:
        raise ValueError(f"unknown order type {kind!r}; choose one of {ORDER_TYPES}")
    if kind == "locality":
        if group_sizes is None:
            raise ValueError("locality-aware orders need group_sizes")
        return locality_aware(grid, group_sizes, tau=tau, rho=rho, batch=batch, seed=seed, device=device, known=known)
    if kind == "raster":
        orders = raster(grid, batch=row_seeds(seed, batch)[1], device=device)
    else:
        orders = (random if kind == "random" else halton)(grid, batch=batch, seed=seed, device=device)
    return orders if known is None else known_first(orders, known, grid)
