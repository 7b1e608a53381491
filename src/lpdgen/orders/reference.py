"""The locality-aware order as a plain loop, one image at a time: the rule to read.

:func:`lpdgen.orders.locality_aware` is the same rule vectorised over a batch; the tests require both to
give identical orders for the same seed, and ``benchmarks/orders.py`` times one against the other. This
version uses plain Python lists and consumes randomness exactly like the fast one (one
:func:`~lpdgen.orders.locality.tie_break_keys` draw per step from
:func:`~lpdgen.orders.locality.tie_break_rng`). Squared euclidean distances stand in for distances in
the farthest-point step (same argmax, exact ties).

One step k with group size g_k, given the cells selected so far:

1. proximity of a free cell = sum of 1/distance over its selected 8-neighbours (1 for an edge
   neighbour, 1/sqrt 2 for a diagonal one); rank the free cells by proximity, descending, ties broken
   by the step's random key;
2. c1 = the ranked cells with proximity >= tau (empty at step 1), c2 = the rest;
3. walk c1 in rank order, taking a cell unless it lies within Chebyshev distance rho of a cell taken
   this step (then it is set aside), until g_k cells are taken;
4. fill any shortfall by farthest-point sampling over c2 ++ set-aside ++ untried c1: the cell with the
   largest minimum distance to this step's cells, first in that pool order on ties (an empty step
   starts from the pool cell with the smallest key, a uniformly random one).

Editing: known cells start out selected, so step 1 follows rules 1-3 too (at a fresh image's step 1
nothing is selected and c1 is empty); the order lists them first, in raster order.
"""

from __future__ import annotations

import math

import torch

from .locality import PROXIMITY_EPS, PUBLISHED_RHO, PUBLISHED_TAU, ROW_CHUNK, tie_break_keys, tie_break_rng
from .simple import Seeds, known_cells, row_seeds

NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def locality_aware_one(
    h: int,
    w: int,
    group_sizes: list[int],
    tau: float,
    rho: float,
    keys: list[list[int]],
    known: list[bool] | None = None,
) -> list[int]:
    """One order; ``keys[k][cell]`` is the tie-break key of ``cell`` at step k; ``known[cell]``: known
    before step 1 (editing)."""
    n = h * w
    selected = list(known) if known is not None else [False] * n
    order: list[int] = [c for c in range(n) if selected[c]]
    fresh = not order  # nothing selected before step 1

    def prox(cell: int) -> float:
        y, x = divmod(cell, w)
        total = 0.0
        for dy, dx in NEIGHBOURS:
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w and selected[yy * w + xx]:
                total += 1.0 / math.hypot(dy, dx)
        return total

    def chebyshev(a: int, b: int) -> int:
        return max(abs(a // w - b // w), abs(a % w - b % w))

    def dist2(a: int, b: int) -> int:
        return (a // w - b // w) ** 2 + (a % w - b % w) ** 2

    for k, g in enumerate(group_sizes):
        key = keys[k]
        free = [c for c in range(n) if not selected[c]]
        p = {c: prox(c) for c in free}
        free.sort(key=lambda c: (-round(p[c], 9), key[c]))
        if k == 0 and fresh:
            c1, c2 = [], free
        else:
            c1 = [c for c in free if p[c] >= tau - PROXIMITY_EPS]
            c2 = [c for c in free if p[c] < tau - PROXIMITY_EPS]
        step: list[int] = []
        aside: list[int] = []
        untried: list[int] = []
        for i, c in enumerate(c1):
            if len(step) == g:
                untried = c1[i:]
                break
            if any(chebyshev(c, s) <= rho for s in step):
                aside.append(c)
            else:
                step.append(c)
        pool = c2 + aside + untried
        if len(step) < g and not step:
            first = min(pool, key=lambda c: (key[c], c))
            step.append(first)
            pool.remove(first)
        while len(step) < g:
            best, best_d = None, -1
            for c in pool:
                d = min(dist2(c, s) for s in step)
                if d > best_d:
                    best, best_d = c, d
            step.append(best)
            pool.remove(best)
        for c in step:
            selected[c] = True
        order.extend(step)
    return order


def locality_aware_reference(
    h: int,
    w: int,
    group_sizes: list[int],
    tau: float = PUBLISHED_TAU,
    rho: float = PUBLISHED_RHO,
    batch: int | None = None,
    seed: Seeds = 0,
    known=None,
) -> torch.Tensor:
    """(batch, h*w) orders from the loop, drawing keys like the fast version (``seed``: one seed for the
    batch, or one per row; ``known``: a mask of known cells as the fast version takes it)."""
    seeds, batch = row_seeds(seed, batch)
    known = known_cells(known, (h, w), batch).tolist() if known is not None else [None] * batch
    if seeds is not None:  # each row is the batch-1 order of its own seed
        return torch.cat(
            [
                locality_aware_reference(h, w, group_sizes, tau, rho, 1, s, None if m is None else [m])
                for s, m in zip(seeds, known)
            ]
        )
    rng = tie_break_rng(seed)
    rows = []
    for lo in range(0, batch, ROW_CHUNK):  # keys are drawn per chunk of rows, step by step
        keys = [tie_break_keys(rng, min(ROW_CHUNK, batch - lo), h * w).tolist() for _ in group_sizes]
        rows += [
            locality_aware_one(h, w, group_sizes, tau, rho, [step_keys[b] for step_keys in keys], known[lo + b])
            for b in range(min(ROW_CHUNK, batch - lo))
        ]
    return torch.tensor(rows, dtype=torch.long)
