"""The fast locality-aware order builder: the readable rule of :mod:`lpdgen.orders.reference`, vectorised.

Why vectorised rather than a per-image loop: every sampling call builds a fresh order per image, so the
order must cost far less than a forward pass. Each step is vectorised over a whole block of rows (up to
:data:`BLOCK_CELLS` cells; the per-chunk tie-break key streams are reached by jumping the generator
ahead, so blocking does not change the keys): proximity as a weighted count of selected neighbours from
shifted uint8 sums on padded grids laid end to end, the c1 cells as a threshold on it, their integer keys
(which encode the whole ranking) sorted per row, and then the two inherently sequential parts as loops
vectorised across rows: the greedy repulsion walk, one column of the sorted c1 per iteration (a gather of
"may still be taken" flags and a scatter of the new takes' windows), and farthest-point sampling, one
pick per iteration on uint8 distance ranks over the free cells.

The tests compare this module with the reference on hypothesis-drawn cases, cell for cell: both draw
their randomness through :func:`tie_break_rng` and :func:`tie_break_keys`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .schedules import validate_group_sizes
from .simple import Seeds, grid_shape, known_cells, row_seeds

# The published thresholds (the paper's 256px setting): a free cell is a candidate once its proximity
# reaches TAU (one selected edge neighbour), and a step's cells stay more than RHO apart in Chebyshev
# distance. The paper also uses rho = 3 and 4 at larger step counts and resolutions.
PUBLISHED_TAU = 1.0
PUBLISHED_RHO = 2.0
# Proximity is a sum of 1 (edge neighbour) and 1/sqrt 2 (diagonal neighbour) terms; comparisons with tau
# allow this much rounding so thresholds such as tau = 1/sqrt 2 behave as written.
PROXIMITY_EPS = 1e-9
# locality-aware orders draw their tie-break keys in chunks of this many rows: chunk after chunk, one draw
# per step (part of the randomness contract the tests replay; the builder works on blocks of chunks)
ROW_CHUNK = 64
# farthest-point sampling reads distance ranks from an (N, N) table up to this many cells (2048^2 uint16 =
# 8 MB), and computes them from coordinates on bigger grids
DISTANCE_TABLE_MAX_CELLS = 2048
# chunks are built together in blocks of up to this many cells (rows x N, at least one chunk): bigger
# blocks spread numpy's per-call overhead over more rows, smaller ones keep the working set in cache
BLOCK_CELLS = 1 << 18
# blocks of at most this many rows walk c1 in a plain Python loop (per-call overhead of the vectorised walk)
_PYTHON_WALK_MAX_ROWS = 8

# neighbours (nd), each 0..4; we carry the code 5 ne + nd and compare proximities through exact tables.
_PROX_OF_CODE = np.array([ne + nd / math.sqrt(2.0) for ne in range(5) for nd in range(5)])  # (25,)
# rank of each code by proximity, descending (distinct codes have distinct proximities: sqrt 2 is irrational)
_LEVEL_OF_CODE = np.argsort(np.argsort(-_PROX_OF_CODE, kind="stable"), kind="stable").astype(np.int64)
_LEVEL_SHIFT = 56  # key = level << 56 | random bits << cell_bits | cell: sorts by proximity desc, then random
_NOT_FREE = np.int64(31) << _LEVEL_SHIFT  # level 31: above every real level (0..24)
# The builder carries the *value* 17 ne + 12 nd + 1 at free cells (0 elsewhere; at most 117, uint8). It
# orders the 25 (ne, nd) pairs exactly as their proximities do (12/17 lies strictly between 2/3 and 3/4,
# the fractions with terms <= 4 nearest 1/sqrt 2), so c1 (proximity >= tau) is "value >= threshold".
_EDGE_WEIGHT, _DIAG_WEIGHT = 17, 12
_VALUE_OF_CODE = np.array([_EDGE_WEIGHT * ne + _DIAG_WEIGHT * nd + 1 for ne in range(5) for nd in range(5)])
assert (np.argsort(-_VALUE_OF_CODE, kind="stable") == np.argsort(-_PROX_OF_CODE, kind="stable")).all()
_LEVEL_KEY_OF_VALUE = np.full(256, _NOT_FREE)  # (256,) the level part of a free cell's key
_LEVEL_KEY_OF_VALUE[_VALUE_OF_CODE] = _LEVEL_OF_CODE << _LEVEL_SHIFT


def _c1_threshold(tau: float) -> int:
    """The smallest value of a free cell in c1 (proximity >= tau); 256 (none) if no proximity reaches tau."""
    values = _VALUE_OF_CODE[_PROX_OF_CODE >= tau - PROXIMITY_EPS]
    return int(values.min()) if values.size else 256


def tie_break_rng(seed: int | torch.Generator | None) -> np.random.Generator:
    """The numpy generator that draws the tie-break keys: PCG64 seeded by an int seed, or by one 62-bit
    draw from a ``torch.Generator``, or from OS entropy for ``None``."""
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed).item())
    return np.random.Generator(np.random.PCG64(seed))


def tie_break_keys(rng: np.random.Generator, batch: int, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """(batch, n) int64 uniform random tie-break keys of one step, with ``56 - bit_length(n)`` bits (the
    remaining bits of an order key carry the proximity level and the cell index). ``out``: a C-contiguous
    (batch, n) int64 array to write them to (the same keys)."""
    bits = _LEVEL_SHIFT - max(1, (n - 1).bit_length())
    raw = rng.bit_generator.random_raw((batch, n))
    if out is None:
        return (raw >> np.uint64(64 - bits)).view(np.int64)
    np.right_shift(raw, np.uint64(64 - bits), out=out.view(np.uint64))
    return out


class _DistanceRanks:
    """Distances from given cells to every cell of an h x w grid, as *ranks* of the squared euclidean
    distance among the distinct values on the grid (0 = same cell): same order and exact ties as the
    distances, in uint8 while there are at most 256 distinct values (16x16: 120), else uint16. Rows of a
    cached (N, N) table for grids up to :data:`DISTANCE_TABLE_MAX_CELLS` cells, computed from
    coordinates beyond (the table grows as N^2)."""

    def __init__(self, h: int, w: int) -> None:
        self.y, self.x = np.divmod(np.arange(h * w), w)
        self.rank_of = _rank_of_squared_distance(h, w)
        self.table = _distance_rank_table(h, w) if h * w <= DISTANCE_TABLE_MAX_CELLS else None

    def __call__(self, cells: np.ndarray) -> np.ndarray:
        """``cells`` of any shape S -> (*S, N) distance ranks."""
        if self.table is not None:
            return self.table[cells]
        dy = self.y[cells][..., None] - self.y
        dx = self.x[cells][..., None] - self.x
        return self.rank_of[dy * dy + dx * dx]

    def between(self, cells: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``cells`` (R,), ``targets`` (R, F) -> (R, F) distance ranks from cells[r] to targets[r]."""
        if self.table is not None:
            return self.table.ravel()[cells[:, None] * len(self.y) + targets]
        dy = self.y[cells][:, None] - self.y[targets]
        dx = self.x[cells][:, None] - self.x[targets]
        return self.rank_of[dy * dy + dx * dx]


def _rank_of_squared_distance(h: int, w: int) -> np.ndarray:
    """(max + 1,) rank of each squared distance value among those occurring on an h x w grid."""
    values = np.unique((np.arange(h)[:, None] ** 2 + np.arange(w)[None] ** 2).ravel())
    rank_of = np.zeros(int(values[-1]) + 1, dtype=np.uint8 if len(values) <= 256 else np.uint16)
    rank_of[values] = np.arange(len(values))
    return rank_of


@lru_cache(maxsize=4)
def _distance_rank_table(h: int, w: int) -> np.ndarray:
    """(N, N) distance ranks (see :class:`_DistanceRanks`) between the cells of an h x w grid."""
    y, x = np.divmod(np.arange(h * w), w)
    return _rank_of_squared_distance(h, w)[(y[:, None] - y[None]) ** 2 + (x[:, None] - x[None]) ** 2]


def locality_aware(
    grid: int | tuple[int, int],
    group_sizes: list[int] | tuple[int, ...],
    tau: float = PUBLISHED_TAU,
    rho: float = PUBLISHED_RHO,
    batch: int | None = None,
    seed: Seeds = None,
    device: str | torch.device = "cpu",
    known=None,
) -> torch.Tensor:
    """(batch, h*w) locality-aware generation orders, each row built independently (the rule, written
    as a plain loop, is :func:`lpdgen.orders.reference.locality_aware_reference`).

    Editing (``known``): the known cells count as selected before step 1, so step 1 already ranks
    the free cells by proximity to them (generation grows from the boundary of what is known, spread
    out by the repulsion); each row lists its known cells first, in raster order, then the generated
    cells, and ``group_sizes`` sum to the number of unknown cells. With no known cell this is the
    ordinary order of the same seed.

    Step 1 takes one cell uniformly at random (a first group larger than 1 adds farthest points to it).
    Step k ranks the free cells by proximity (sum of 1/distance to selected 8-neighbours), descending,
    ties broken by a uniform random key per cell and step; c1 = ranked cells with proximity >= tau. The
    walk over c1 takes a cell unless it lies within Chebyshev ``rho`` of a cell taken this step, and
    stops at g_k cells; any shortfall is filled by farthest-point sampling (largest minimum euclidean
    distance to this step's cells, first in pool order on ties; the pool cell with the smallest key,
    i.e. a uniformly random one, if the step is empty) over the pool c2 ++ set-aside ++ untried c1.
    Within a row, a step's cells appear in the order they were chosen.

    Built with numpy on the CPU (the work is small integer bookkeeping that torch's per-op overhead
    would dominate); the result is moved to ``device``. Randomness: :func:`tie_break_rng` from
    ``seed``; for each chunk of :data:`ROW_CHUNK` rows, one :func:`tie_break_keys` draw per step. With
    one seed per row, row i has its own ``tie_break_rng(seed[i])`` and is exactly the batch-1 order of
    ``seed[i]`` (a seeded batch in one call, each image independent of the batch it is built in).

    Args:
        grid: side of a square grid or (h, w).
        group_sizes: g_1..g_K, each >= 1, summing to h*w.
        tau: proximity threshold (:data:`PUBLISHED_TAU`).
        rho: repulsion threshold in Chebyshev distance (:data:`PUBLISHED_RHO`; the paper also uses 3
            and 4); < 1 disables repulsion.
        batch: number of orders B (default: the number of per-row seeds, else 1).
        seed: int seed, a ``torch.Generator``, or ``None`` for a fresh random seed; or a sequence of
            ints / generators, one per row.
        device: where to return the orders.
        known: optional bool mask of known cells, (h, w) / (N,) for every row or (B, h, w) / (B, N)
            (:func:`~lpdgen.orders.simple.known_cells`; every row knows equally many cells).
    Returns:
        (batch, h*w) LongTensor of raster indices.
    """
    h, w = grid_shape(grid)
    if known is not None and batch is None and not isinstance(seed, (list, tuple, range, np.ndarray, torch.Tensor)):
        batch = known_cells(known, (h, w)).shape[0]  # a per-row mask sets the batch
    seeds, batch = row_seeds(seed, batch)
    known = known_cells(known, (h, w), batch) if known is not None else np.zeros((batch, h * w), dtype=bool)
    sizes = validate_group_sizes(group_sizes, h * w - int(known[0].sum()))
    radius = math.floor(rho) if rho >= 1 else 0
    if seeds is None:
        streams = _chunk_key_streams(tie_break_rng(seed), batch, h * w, len(sizes))
    else:  # a batch-1 call per seed draws its keys from its own generator, one row per step
        streams = [(tie_break_rng(s), 1) for s in seeds]
    block_rows = max(1, BLOCK_CELLS // (ROW_CHUNK * h * w)) * ROW_CHUNK  # whole chunks per block
    blocks, row = [], 0
    for block in _blocks(streams, block_rows):
        rows = sum(r for _, r in block)
        blocks.append(_locality_aware_block(h, w, sizes, tau, radius, block, known[row : row + rows]))
        row += rows
    return torch.from_numpy(np.concatenate(blocks)).to(device)


def _blocks(
    streams: list[tuple[np.random.Generator, int]], max_rows: int
) -> list[list[tuple[np.random.Generator, int]]]:
    """Consecutive streams grouped into blocks of at most ``max_rows`` rows (at least one stream each)."""
    blocks, rows = [], max_rows
    for stream in streams:
        if rows + stream[1] > max_rows:
            blocks.append([])
            rows = 0
        blocks[-1].append(stream)
        rows += stream[1]
    return blocks


def _chunk_key_streams(
    rng: np.random.Generator, batch: int, n: int, steps: int
) -> list[tuple[np.random.Generator, int]]:
    """(generator, rows) per chunk of :data:`ROW_CHUNK` rows, each generator a copy of ``rng`` jumped
    ahead (``PCG64.advance``) to where that chunk's tie-break keys start in the contract (chunk after
    chunk, step after step, ``rows * n`` raw draws per step). Drawing step k of every chunk from its
    own copy gives exactly the keys of the sequential contract while a block of chunks is built step
    by step together."""
    streams, offset = [], 0
    for lo in range(0, batch, ROW_CHUNK):
        rows = min(ROW_CHUNK, batch - lo)
        bit_gen = np.random.PCG64()
        bit_gen.state = rng.bit_generator.state
        streams.append((np.random.Generator(bit_gen.advance(offset)), rows))
        offset += steps * rows * n
    return streams


def _locality_aware_block(
    h: int,
    w: int,
    sizes: list[int],
    tau: float,
    radius: int,
    streams: list[tuple[np.random.Generator, int]],
    known: np.ndarray,
) -> np.ndarray:
    """(rows, h*w) int64 orders for a block of row chunks (``(generator, rows)`` pairs, one per chunk of
    rows sharing a key stream) with their (rows, h*w) known cells: the body of :func:`locality_aware`.

    Layout: every row's grid is padded by ``pad = max(radius, 1)`` cells on each side and the padded
    grids of all rows are laid end to end in one flat array, so a neighbour or a Chebyshev window is a
    constant offset and never leaves its own grid. Per step: the tie-break keys of every chunk, the
    proximity values 17 ne + 12 nd + 1 of the free cells by eight shifted sums (uint8), the c1 cells
    (value >= threshold), the walk (:func:`_walk`) and farthest-point filling (:func:`_farthest_fill`)
    for the rows still short of g_k.
    """
    batch = sum(rows for _, rows in streams)
    n = h * w
    cell_bits = max(1, (n - 1).bit_length())
    cell_mask = (1 << cell_bits) - 1
    pad = max(radius, 1)
    hp, wp = h + 2 * pad, w + 2 * pad
    plane = hp * wp
    size = batch * plane
    y, x = np.divmod(np.arange(n, dtype=np.int64), w)
    flat_of_cell = (y + pad) * wp + x + pad  # (N,) position of a cell in its padded grid
    cell_of_flat = np.zeros(plane, dtype=np.int64)
    cell_of_flat[flat_of_cell] = np.arange(n)
    row_base = np.arange(batch, dtype=np.int64) * plane  # (B,) start of each row's padded grid
    # selected: 1 at selected cells (neighbour counts); free_flat: 1 at free cells (0 on the padding)
    selected = np.zeros(size, dtype=np.uint8)
    free_flat = np.zeros((batch, hp, wp), dtype=np.uint8)
    free_flat[:, pad : pad + h, pad : pad + w] = 1
    free_flat = free_flat.ravel()
    value = free_flat.copy()  # 17 ne + 12 nd + 1 at free cells, 0 elsewhere; outside [lo, hi) only padding
    lo, hi = wp + 1, size - wp - 1
    c1_from = _c1_threshold(tau)
    window = np.array(
        [dy * wp + dx for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)], dtype=np.int64
    )
    geometry = (row_base, flat_of_cell, cell_mask, window)
    dist_rows = _DistanceRanks(h, w)
    free = np.ones((batch, n), dtype=np.uint8)  # 1 at cells not selected yet
    scratch = np.empty(size, dtype=np.uint8)
    rows_b = np.arange(batch)[:, None]
    out = np.empty((batch, n), dtype=np.int64)
    rnd = np.empty((batch, n), dtype=np.int64)  # this step's tie-break keys, chunk by chunk
    chunks = np.split(rnd, np.cumsum([rows for _, rows in streams])[:-1])  # views
    start = int(known[0].sum())
    prefilled = start > 0  # known cells: selected before step 1, which then walks c1 like any other step
    if prefilled:
        out[:, :start] = np.nonzero(known)[1].reshape(batch, start)  # raster order within each row
        free[known] = 0
        flat = (row_base[:, None] + flat_of_cell)[known]
        selected[flat] = 1
        free_flat[flat] = 0
    for k, g in enumerate(sizes):
        for (gen, rows), chunk in zip(streams, chunks):
            tie_break_keys(gen, rows, n, out=chunk)
        picks = np.zeros((batch, g), dtype=np.int64)
        n_chosen = np.zeros(batch, dtype=np.int64)
        stop = np.full(batch, _NOT_FREE)  # key of the walk's g-th cell (the stop), per row
        walks = k > 0 or prefilled  # step 1 of a fresh image has no selected cell: no c1
        if walks:
            v, s, tmp = value[lo:hi], selected, scratch[lo:hi]
            np.add(s[lo - wp : hi - wp], s[lo + wp : hi + wp], out=v)
            v += s[lo - 1 : hi - 1]
            v += s[lo + 1 : hi + 1]
            v *= _EDGE_WEIGHT
            np.add(s[lo - wp - 1 : hi - wp - 1], s[lo - wp + 1 : hi - wp + 1], out=tmp)
            tmp += s[lo + wp - 1 : hi + wp - 1]
            tmp += s[lo + wp + 1 : hi + wp + 1]
            tmp *= _DIAG_WEIGHT
            v += tmp
            v += free_flat[lo:hi]
            v *= free_flat[lo:hi]
            c1_mask = value >= c1_from
            c1_flat = np.flatnonzero(c1_mask)  # by row, then raster order
            if c1_flat.size:
                _walk(c1_flat, c1_mask, value, rnd, cell_of_flat, plane, g, cell_bits, geometry, picks, n_chosen, stop)
        rows = np.flatnonzero(n_chosen < g)
        if rows.size:  # step 1 has no c1: every pool cell is in group 0
            _farthest_fill(
                picks,
                n_chosen,
                rows,
                free,
                rnd,
                stop,
                value,
                c1_from if walks else 256,
                row_base,
                flat_of_cell,
                dist_rows,
                cell_bits,
            )
        out[:, start : start + g] = picks
        free[rows_b, picks] = 0
        flat = (row_base[:, None] + flat_of_cell[picks]).ravel()
        selected[flat] = 1
        free_flat[flat] = 0
        start += g
    return out


def _walk(
    c1_flat: np.ndarray,
    allowed: np.ndarray,
    value: np.ndarray,
    rnd: np.ndarray,
    cell_of_flat: np.ndarray,
    plane: int,
    g: int,
    cell_bits: int,
    geometry: tuple,
    picks: np.ndarray,
    n_chosen: np.ndarray,
    stop: np.ndarray,
) -> None:
    """The repulsion walk of a step for every row at once: walk the c1 cells (``c1_flat``, flat padded positions; the
    flat c1 mask ``allowed`` is used up as the walk's "may still be taken" flags) in key order, taking a
    cell unless a cell taken before it lies within its Chebyshev window. Writes the first g taken cells
    of each row to ``picks`` (in walk order), their count to ``n_chosen`` and the key of the g-th (where
    reached) to ``stop``.

    The c1 cells of each row are sorted by key into a (B, L) matrix (L = the longest c1, ~100 cells at
    16x16), then the walk is L vectorised iterations over its columns, each a gather of the flags and a
    scatter of the new takes' windows (a plain loop per row for a few rows). The walk does not stop at
    g: a cell's fate depends only on earlier cells, so the first g takes are those of the stopped walk.
    """
    row_base, flat_of_cell, cell_mask, window = geometry
    batch, n = rnd.shape
    starts = np.searchsorted(c1_flat, row_base)  # c1_flat is sorted by row
    counts = np.diff(starts, append=c1_flat.size)
    width = int(counts.max())
    row = np.repeat(np.arange(batch), counts)
    cell = cell_of_flat[c1_flat - row_base[row]]
    key = np.take(_LEVEL_KEY_OF_VALUE, value[c1_flat]) | (np.take(rnd, row * n + cell) << cell_bits) | cell
    ranked = np.full((batch, width), _NOT_FREE)
    ranked[np.arange(width) < counts[:, None]] = key  # row b's first counts[b] entries, row-major
    ranked.sort(axis=1)  # (B, L) keys in walk order, _NOT_FREE after the row's c1
    # flat positions, column by column. Past its c1, a row points at its cell 0 (the key _NOT_FREE ends
    # in 0), which is not allowed by then: not in c1, or walked already (taken cells block themselves)
    walk = row_base[:, None] + flat_of_cell[ranked & cell_mask]  # (B, L)
    if batch <= _PYTHON_WALK_MAX_ROWS:  # a plain loop beats L numpy calls on a few rows
        taken, column = _walk_rows_python(walk, counts, allowed, window)
        row = taken // plane
    else:
        walk = walk.T.copy()
        taken, per_column = [], []
        for i in range(width):
            pos = walk[i]
            new = pos[allowed[pos]]  # (fancy indexing: less fixed cost than np.take on small arrays)
            allowed[(new[:, None] + window).ravel()] = False
            taken.append(new)
            per_column.append(new.size)
        # the takes in walk order, then by row (stable): rank within the row = position in the walk
        taken = np.concatenate(taken)
        column = np.repeat(np.arange(width), per_column)
        row = taken // plane
        by_row = np.argsort(row.astype(np.uint16 if batch <= 1 << 16 else np.int64), kind="stable")  # radix sort
        taken, column, row = taken[by_row], column[by_row], row[by_row]
    per_row = np.bincount(row, minlength=batch)
    rank = np.arange(taken.size) - (np.cumsum(per_row) - per_row)[row]
    keep = rank < g
    row, rank, column = row[keep], rank[keep], column[keep]
    picks[row, rank] = cell_of_flat[taken[keep] - row * plane]
    np.minimum(per_row, g, out=n_chosen)
    last = rank == g - 1
    stop[row[last]] = ranked[row[last], column[last]]


def _walk_rows_python(
    walk: np.ndarray, counts: np.ndarray, allowed: np.ndarray, window: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The walk of :func:`_walk` row by row in plain Python (for a few rows): the taken flat positions
    and their walk columns, by row, then in walk order."""
    flags = bytearray(allowed.view(np.uint8).tobytes())
    offsets = window.tolist()
    taken, column = [], []
    for positions, count in zip(walk.tolist(), counts.tolist()):
        for i, p in enumerate(positions[:count]):
            if flags[p]:
                for o in offsets:
                    flags[p + o] = 0
                taken.append(p)
                column.append(i)
    return np.array(taken, dtype=np.int64), np.array(column, dtype=np.int64)


def _farthest_fill(
    picks: np.ndarray,
    n_chosen: np.ndarray,
    rows: np.ndarray,
    free: np.ndarray,
    rnd: np.ndarray,
    stop: np.ndarray,
    value: np.ndarray,
    c1_from: int,
    row_base: np.ndarray,
    flat_of_cell: np.ndarray,
    dist_rows: _DistanceRanks,
    cell_bits: int,
) -> None:
    """Fill columns n_chosen.. of ``picks[rows]`` by farthest-point sampling (the fill of a step) over the
    free cells (``free``, (B, N) uint8) not picked yet, in place. Ties in distance go to the first cell
    in pool order: group (c2, set-aside = c1 below ``stop``, untried = c1 above it), then key; distance
    ranks keep ties exact, and pool-order keys are computed for the tied cells only (c1: ``value``
    >= ``c1_from``). A row with no cell yet starts from its free cell of smallest random key.

    Every row has the same number F of free cells, so once F <= N / 2 the work runs on (R, F) arrays of
    the free cells only (F shrinks to g_K at the last step, where most of the filling happens). The
    running min distance (rank) to the step's cells is 0 exactly outside the pool: at the step's own
    cells and at cells selected before; pool cells are >= 1. Rows are handled in ascending order of
    n_chosen, so the rows filling at any column are a prefix (views)."""
    g = picks.shape[1]
    rows = rows[np.argsort(n_chosen[rows], kind="stable")]
    n_chosen = n_chosen[rows]
    sub = picks[rows]
    num = len(rows)
    all_rows = np.arange(num)
    n = free.shape[1]
    free_r = free[rows].view(bool)
    # late steps (few free cells, most of the filling) work on the free cells only: pool[r] lists row r's
    # F free cells ascending; early steps keep all N columns (pool = None) and mask the selected ones
    compact = 2 * int(free_r[0].sum()) <= n
    pool = np.flatnonzero(free_r).reshape(num, -1) - (all_rows * n)[:, None] if compact else None
    empty = int(np.searchsorted(n_chosen, 0, side="right"))  # rows [0, empty) have no cell yet
    if empty:  # the free cell of smallest random key (then cell)
        sub[:empty, 0] = np.where(free_r[:empty], rnd[rows[:empty]], _NOT_FREE).argmin(axis=1)
        n_chosen[:empty] = 1
    # min distance to the step's cells; unfilled columns repeat column 0, which leaves the min unchanged
    width = int(n_chosen[-1])
    filled = np.where(np.arange(width) < n_chosen[:, None], sub[:, :width], sub[:, :1])  # (R, width)
    dist = dist_rows(filled[:, 0])  # column by column: contiguous minima, bounded memory
    for j in range(1, width):
        np.minimum(dist, dist_rows(filled[:, j]), out=dist)
    if compact:
        dist = np.take_along_axis(dist, pool, axis=1)  # (R, F)
    else:
        dist *= free_r  # 0 at cells selected before
    filling_at = np.searchsorted(n_chosen, np.arange(g), side="right")  # rows filling column t: [0, filling_at[t])
    cell_mask = (1 << cell_bits) - 1

    def pool_order(r: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Pool-order keys of ``cells`` in rows ``r`` (block rows): group above the key's level, random
        bits and cell."""
        c = value[row_base[r] + flat_of_cell[cells]]
        key = _LEVEL_KEY_OF_VALUE[c] | (rnd.ravel()[r * n + cells] << cell_bits) | cells
        return (np.where(c >= c1_from, np.where(key < stop[r], 1, 2), 0) << 61) + key

    row_starts = all_rows * dist.shape[1]  # flat index of each row's first entry in dist
    order = pool_order(rows[:, None], pool) if compact else None  # (R, F), few columns late in the order
    for t in range(int(n_chosen[0]), g):
        m = int(filling_at[t])
        d = dist[:m]
        hits = np.flatnonzero(d == d.max(axis=1, keepdims=True))  # the farthest cells (few; 2-D nonzero is slow)
        if hits.size == m:  # no ties
            pick = pool.ravel()[hits] if compact else hits - row_starts[:m]
        else:  # the first in pool order of each row's farthest cells
            if compact:
                order_t = order.ravel()[hits]  # order[:m] has the shape of d
            else:
                r = hits // d.shape[1]
                order_t = pool_order(rows[r], hits - row_starts[r])
            pick = np.minimum.reduceat(order_t, np.searchsorted(hits, row_starts[:m])) & cell_mask
        # the pick's own distance is 0: out of the pool
        np.minimum(d, dist_rows.between(pick, pool[:m]) if compact else dist_rows(pick), out=d)
        sub[:m, t] = pick
    picks[rows] = sub
