"""Generation orders and group-size schedules (SPEC §5): what LPD generates at each step, and where.

An *order* is a (B, N) LongTensor of raster indices: row b lists the N = h*w grid cells of image b in
generation order. A *schedule* (group-size list) g_1..g_K says how many of them each step generates.
Both are pure data, so the model, the sampler and the trainer all take them as arguments.

Why the locality-aware order is vectorised rather than a per-image loop: every sampling call builds a
fresh order per image, so the order must cost far less than a forward pass. The per-step work splits
into parts that are parallel over cells (proximity codes from shifted sums, one integer key per cell
that encodes the whole ranking, so no row is ever fully sorted) and one inherently sequential greedy
walk over the candidates. The walk is the greedy independent set of the Chebyshev conflict graph in
key order, which we compute in a few parallel *rounds* (a candidate is decided once every earlier
conflicting candidate is), each round being two separable windowed minima over the padded grids. Only
farthest-point sampling stays a loop over picks, vectorised across the batch.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .io import PathLike, atomic_write

ORDER_TYPES: tuple[str, ...] = ("locality", "raster", "random", "halton")

# Proximity is a sum of 1 (edge neighbour) and 1/sqrt 2 (diagonal neighbour) terms; comparisons with tau
# allow this much rounding so thresholds such as tau = 1/sqrt 2 behave as written.
PROXIMITY_EPS = 1e-9
# Generated schedules for token counts without published ones use these fractions of N as step counts
# (the published 256-token set is exactly {8, 12, 16, 20, 24, 32, 64, 128, 256} = these x 256).
STEP_FRACTIONS: tuple[float, ...] = (1 / 32, 3 / 64, 1 / 16, 5 / 64, 3 / 32, 1 / 8, 1 / 4, 1 / 2, 1.0)
HALTON_BASES: tuple[int, int] = (2, 3)  # (rows, columns)
# locality-aware orders are built in chunks of this many rows: the working arrays stay in cache, and each
# chunk draws its own tie-break keys, step by step (part of the randomness contract the tests replay)
ROW_CHUNK = 64
# farthest-point sampling reads distance rows from an (N, N) table up to this many cells (2048^2 int16 =
# 8 MB), and computes them from coordinates on bigger grids
DISTANCE_TABLE_MAX_CELLS = 2048


# ----------------------------------------------------------------------------------------------------
# Group-size schedules
# ----------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def published_group_sizes() -> dict[int, dict[int, tuple[int, ...]]]:
    """The published schedules, ``{num_tokens: {steps: group sizes}}`` (package data, read once)."""
    text = resources.files("lpdgen").joinpath("assets/group_sizes.json").read_text()
    raw = json.loads(text)["schedules"]
    # the file is keyed by image size (256 / 512 px); index it by token count, which is what callers know
    table: dict[int, dict[int, tuple[int, ...]]] = {}
    for lists in raw.values():
        for steps, sizes in lists.items():
            table.setdefault(sum(sizes), {})[int(steps)] = tuple(int(g) for g in sizes)
    return table


def cosine_group_sizes(num_tokens: int, steps: int) -> list[int]:
    """The generating rule behind :func:`group_sizes` for counts without a published list.

    g_1 = 1; the other N - 1 tokens follow the increments of the cosine schedule (the fraction generated
    after step k grows like 1 - cos(pi/2 * k/K), so early steps are small and late ones large), each
    increment raised to at least one token by water-filling (steps whose share would be < 1 get exactly
    1, the rest are rescaled), rounded cumulatively to integers and sorted ascending. Sorting keeps the
    sum and the ">= 1" property and makes the list non-decreasing. Within one token per step of every
    published list (see tests/test_orders.py).
    """
    _check_steps(num_tokens, steps)
    if steps == 1:
        return [num_tokens]
    k = np.arange(2, steps + 1, dtype=np.float64)
    # share of step k under 1 - cos(pi/2 k/K); increasing in k
    weight = np.cos(np.pi / 2 * (k - 1) / steps) - np.cos(np.pi / 2 * k / steps)
    rest = num_tokens - 1
    # water-filling: the smallest m with steps m.. scaled to (rest - m) all >= 1 (weights are increasing,
    # so clamped steps are a prefix)
    tail = np.cumsum(weight[::-1])[::-1]  # tail[m] = sum of weight[m:]
    m = np.arange(len(weight))
    ok = (rest - m) * weight / tail >= 1.0
    first = int(np.argmax(ok)) if ok.any() else len(weight)
    share = np.ones_like(weight)
    if first < len(weight):
        share[first:] = (rest - first) * weight[first:] / tail[first]
    cum = np.floor(np.cumsum(share) + 0.5)
    cum[-1] = rest  # exact total despite float rounding
    sizes = np.diff(np.concatenate([[0.0], cum])).astype(np.int64)
    return [1, *sorted(int(g) for g in sizes)]


def group_sizes(num_tokens: int, steps: int) -> list[int]:
    """Tokens generated at each of ``steps`` steps for an image of ``num_tokens`` tokens.

    Returns the published list where one exists (256 tokens: 8..256 steps; 1024 tokens: 32..1024
    steps), else :func:`cosine_group_sizes`. Every list starts at 1, never decreases and sums to
    ``num_tokens``. Raises ``ValueError`` unless 1 <= steps <= num_tokens.
    """
    _check_steps(num_tokens, steps)
    published = published_group_sizes().get(num_tokens, {}).get(steps)
    return list(published) if published is not None else cosine_group_sizes(num_tokens, steps)


def all_group_sizes(num_tokens: int) -> list[list[int]]:
    """Every schedule of a token count, fewest steps first: the published set for 256 / 1024 tokens,
    else one list per step count in ``round(f * N)`` for f in :data:`STEP_FRACTIONS` (the 256-token
    set scaled). Training draws one of these uniformly per iteration (SPEC §3)."""
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
    published = published_group_sizes().get(num_tokens)
    if published:
        return [list(published[s]) for s in sorted(published)]
    steps = sorted({min(num_tokens, max(1, round(f * num_tokens))) for f in STEP_FRACTIONS})
    return [group_sizes(num_tokens, s) for s in steps]


def _check_steps(num_tokens: int, steps: int) -> None:
    if int(num_tokens) != num_tokens or num_tokens < 1:
        raise ValueError(f"num_tokens must be a positive integer, got {num_tokens!r}")
    if int(steps) != steps or not 1 <= steps <= num_tokens:
        raise ValueError(f"steps must be an integer in [1, num_tokens={num_tokens}], got {steps!r}")


def validate_group_sizes(group_sizes: list[int] | tuple[int, ...] | torch.Tensor, num_tokens: int) -> list[int]:
    """Check a schedule against a token count and return it as a list of ints.

    Raises ``ValueError`` naming the problem: empty, non-integer, an entry < 1, or a sum != num_tokens.
    (A first group larger than 1 is allowed: orders fill it with one random cell plus farthest points.)
    """
    sizes = group_sizes.tolist() if isinstance(group_sizes, torch.Tensor) else list(group_sizes)
    if not sizes:
        raise ValueError("group sizes are empty")
    if any(isinstance(g, bool) or int(g) != g for g in sizes):
        raise ValueError(f"group sizes must be integers, got {sizes}")
    sizes = [int(g) for g in sizes]
    bad = [(k, g) for k, g in enumerate(sizes) if g < 1]
    if bad:
        raise ValueError(f"every group size must be >= 1; (step index, size) pairs violating it: {bad[:5]}")
    if sum(sizes) != num_tokens:
        raise ValueError(f"group sizes sum to {sum(sizes)} but the grid has {num_tokens} tokens")
    return sizes


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


# ----------------------------------------------------------------------------------------------------
# Orders
# ----------------------------------------------------------------------------------------------------


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


def make_rng(seed: int | torch.Generator | None, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator from a seed (``None``: a fresh non-deterministic seed; a Generator passes through)."""
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator(device=torch.device(device))
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def _check_batch(batch: int) -> None:
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")


def raster(grid: int | tuple[int, int], batch: int = 1, device: str | torch.device = "cpu") -> torch.Tensor:
    """(batch, h*w) raster orders: row-major, one token per position, as in plain autoregression."""
    h, w = grid_shape(grid)
    _check_batch(batch)
    return torch.arange(h * w, device=device).expand(batch, h * w).clone()


def random(grid: int | tuple[int, int], batch: int = 1, seed: int | torch.Generator | None = None,
           device: str | torch.device = "cpu") -> torch.Tensor:
    """(batch, h*w) uniformly random permutations, independent per row (the order LPD trains on)."""
    h, w = grid_shape(grid)
    _check_batch(batch)
    gen = make_rng(seed, device)
    return torch.rand((batch, h * w), generator=gen, device=device).argsort(dim=1)


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


def halton(grid: int | tuple[int, int], batch: int = 1, seed: int | torch.Generator | None = None,
           device: str | torch.device = "cpu") -> torch.Tensor:
    """(batch, h*w) Halton-sequence orders, the low-discrepancy baseline of the paper's ablation.

    Points (radical inverse base 2 -> row, base 3 -> column) are mapped to grid cells and each cell is
    ordered by the first point that lands in it, so successive tokens spread evenly over the image.
    Each row applies its own random toroidal shift (Cranley-Patterson rotation) to the points, which
    keeps the low discrepancy while making the orders of a batch differ.
    """
    h, w = grid_shape(grid)
    _check_batch(batch)
    n = h * w
    gen = make_rng(seed, device)
    shift = torch.rand((batch, 2), generator=gen, dtype=torch.float64, device=device)  # (B, 2)
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


# Proximity of a cell is determined by its counts of selected edge neighbours (ne) and diagonal
# neighbours (nd), each 0..4; we carry the code 5 ne + nd and compare proximities through exact tables.
_PROX_OF_CODE = np.array([ne + nd / math.sqrt(2.0) for ne in range(5) for nd in range(5)])  # (25,)
# rank of each code by proximity, descending (distinct codes have distinct proximities: sqrt 2 is irrational)
_LEVEL_OF_CODE = np.argsort(np.argsort(-_PROX_OF_CODE, kind="stable"), kind="stable").astype(np.int64)
_LEVEL_SHIFT = 56  # key = level << 56 | random bits << cell_bits | cell: sorts by proximity desc, then random
_NOT_FREE = np.int64(31) << _LEVEL_SHIFT  # level 31: above every real level (0..24)
_SELECTED_CODE = 32  # added to the code of selected cells: codes >= 32 mean "not free"
_LEVEL_KEY_OF_CODE = np.concatenate([_LEVEL_OF_CODE << _LEVEL_SHIFT, np.full(64 - 25, _NOT_FREE)])  # (64,)


def tie_break_rng(seed: int | torch.Generator | None) -> np.random.Generator:
    """The numpy generator that draws the tie-break keys: PCG64 seeded by an int seed, or by one 62-bit
    draw from a ``torch.Generator``, or from OS entropy for ``None``."""
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed).item())
    return np.random.Generator(np.random.PCG64(seed))


def tie_break_keys(rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
    """(batch, n) int64 uniform random tie-break keys of one step, with ``56 - bit_length(n)`` bits (the
    remaining bits of an order key carry the proximity level and the cell index)."""
    bits = _LEVEL_SHIFT - max(1, (n - 1).bit_length())
    return (rng.bit_generator.random_raw((batch, n)) >> np.uint64(64 - bits)).view(np.int64)


def _window_min_flat(padded: np.ndarray, radius: int, row_len: int, scratch: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Min over the (2 radius + 1)^2 square of every cell of a stack of grids padded by ``radius`` on
    each side, given flattened (C order) with padded rows of ``row_len`` entries. Returns a flat array
    whose entry i is the window min centred at flat index i + radius * (row_len + 1); it lives in one of
    the two ``scratch`` arrays (same size and dtype as ``padded``), so use it before the next call.

    Padding keeps windows of interior cells inside their own grid, so the whole stack is one 1-D
    problem: a sliding min over offsets 1 (columns), then over offsets ``row_len`` (rows), each by
    doubling (log2(2 radius + 1) + 1 contiguous ``np.minimum`` calls), ping-ponging between the two
    scratch buffers instead of allocating an array per call.
    """
    length = 2 * radius + 1
    m = padded
    buffers = [scratch[0], scratch[1]]
    for stride in (1, row_len):
        run, span = m, 1
        while 2 * span <= length:  # run[i] = min of m[i], m[i + stride], ..., 2 span entries
            out = buffers[0][:len(run) - span * stride]
            run = np.minimum(run[:-span * stride], run[span * stride:], out=out)
            buffers.reverse()
            span *= 2
        out_len = len(m) - (length - 1) * stride
        shift = (length - span) * stride  # two runs of span >= length / 2 cover the window
        m = np.minimum(run[:out_len], run[shift:shift + out_len], out=buffers[0][:out_len])
        buffers.reverse()
    return m


def _greedy_repulsion(key: np.ndarray, c1: np.ndarray, h: int, w: int, radius: int) -> np.ndarray:
    """Greedy walk of SPEC §5 step 3 without the stop at g_k: (B, N) mask of the c1 cells taken when
    walking c1 in ascending ``key`` order and skipping any cell within Chebyshev ``radius`` of a taken
    one.

    Parallel rounds: an undecided cell is taken once no earlier undecided-or-taken cell lies in its
    window (one windowed min of keys) and rejected once a taken cell does (one windowed AND). Each
    round decides at least the earliest undecided cell of every row, in practice a whole wave, so a
    handful of rounds replace the walk (about 3 per step at 16x16, rho 2). The walk with a stop at g_k
    takes exactly the first g_k of these cells in key order (a cell's fate depends only on earlier ones).
    All state lives on the flattened padded grids, where window results line up with their centres by
    a constant offset.
    """
    if radius < 1 or not c1.any():
        return c1.copy()
    b = c1.shape[0]
    r = radius
    hp, wp = h + 2 * r, w + 2 * r
    size = b * hp * wp
    centre = slice(r * (wp + 1), size - r * (wp + 1))  # flat cells that window results describe
    board = np.full((b, hp, wp), _NOT_FREE, dtype=np.int64)  # keys of undecided and taken cells
    undecided = np.zeros((b, hp, wp), dtype=bool)
    undecided[:, r:r + h, r:r + w] = c1.reshape(b, h, w)
    np.copyto(board[:, r:r + h, r:r + w], key.reshape(b, h, w), where=undecided[:, r:r + h, r:r + w])
    board, undecided = board.ravel(), undecided.ravel()
    no_taken = np.ones(size, dtype=bool)
    taken = np.zeros(size, dtype=bool)
    und, brd, nt, tk = undecided[centre], board[centre], no_taken[centre], taken[centre]  # views
    key_scratch = (np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64))
    bool_scratch = (np.empty(size, dtype=bool), np.empty(size, dtype=bool))
    while und.any():
        new = und & (_window_min_flat(board, r, wp, key_scratch) == brd)
        tk |= new
        nt &= ~new
        rejected = und & ~new & ~_window_min_flat(no_taken, r, wp, bool_scratch)
        und &= ~(new | rejected)
        np.copyto(brd, _NOT_FREE, where=rejected)
    return taken.reshape(b, hp, wp)[:, r:r + h, r:r + w].reshape(b, h * w)


class _SquaredDistances:
    """Squared euclidean distances from given cells to every cell of an h x w grid: rows of a cached
    (N, N) table for grids up to :data:`DISTANCE_TABLE_MAX_CELLS` cells (int16 while they fit), computed
    from coordinates beyond (the table grows as N^2)."""

    def __init__(self, h: int, w: int) -> None:
        self.y, self.x = np.divmod(np.arange(h * w), w)
        self.dtype = np.int16 if (h - 1) ** 2 + (w - 1) ** 2 < 2**15 else np.int32
        self.table = _distance_table(h, w) if h * w <= DISTANCE_TABLE_MAX_CELLS else None

    def __call__(self, cells: np.ndarray) -> np.ndarray:
        """``cells`` of any shape S -> (*S, N) squared distances."""
        if self.table is not None:
            return self.table[cells]
        dy = self.y[cells][..., None] - self.y
        dx = self.x[cells][..., None] - self.x
        return (dy * dy + dx * dx).astype(self.dtype)



@lru_cache(maxsize=4)
def _distance_table(h: int, w: int) -> np.ndarray:
    """(N, N) squared euclidean distances between the cells of an h x w grid."""
    y, x = np.divmod(np.arange(h * w), w)
    dtype = np.int16 if (h - 1) ** 2 + (w - 1) ** 2 < 2**15 else np.int32
    return ((y[:, None] - y[None]) ** 2 + (x[:, None] - x[None]) ** 2).astype(dtype)


def locality_aware(grid: int | tuple[int, int], group_sizes: list[int] | tuple[int, ...], tau: float = 1.0,
                   rho: float = 2.0, batch: int = 1, seed: int | torch.Generator | None = None,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """(batch, h*w) locality-aware generation orders (SPEC §5), each row built independently.

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
    ``seed``; for each chunk of :data:`ROW_CHUNK` rows, one :func:`tie_break_keys` draw per step.

    Args:
        grid: side of a square grid or (h, w).
        group_sizes: g_1..g_K, each >= 1, summing to h*w.
        tau: proximity threshold (published 1).
        rho: repulsion threshold in Chebyshev distance (published 2, 3 or 4); < 1 disables repulsion.
        batch: number of orders B.
        seed: int seed, a ``torch.Generator``, or ``None`` for a fresh random seed.
        device: where to return the orders.
    Returns:
        (batch, h*w) LongTensor of raster indices.
    """
    h, w = grid_shape(grid)
    sizes = validate_group_sizes(group_sizes, h * w)
    _check_batch(batch)
    rng = tie_break_rng(seed)
    radius = math.floor(rho) if rho >= 1 else 0
    chunks = [_locality_aware_rows(h, w, sizes, tau, radius, min(ROW_CHUNK, batch - lo), rng)
              for lo in range(0, batch, ROW_CHUNK)]
    return torch.from_numpy(np.concatenate(chunks)).to(device)


def _locality_aware_rows(h: int, w: int, sizes: list[int], tau: float, radius: int, batch: int,
                         rng: np.random.Generator) -> np.ndarray:
    """(batch, h*w) int64 orders: the body of :func:`locality_aware` for one chunk of rows."""
    n = h * w
    cell_bits = max(1, (n - 1).bit_length())
    cells = np.arange(n, dtype=np.int64)
    # levels rank proximities descending, so c1 (free, proximity >= tau) is a key range
    c1_below = np.int64(int((_PROX_OF_CODE >= tau - PROXIMITY_EPS).sum())) << _LEVEL_SHIFT
    rows_b = np.arange(batch)[:, None]
    selected = np.zeros((batch, h + 2, w + 2), dtype=np.uint8)  # padded by one cell: every cell has 8 neighbours
    free = np.ones((batch, n), dtype=bool)
    out = np.empty((batch, n), dtype=np.int64)
    start = 0
    for k, g in enumerate(sizes):
        # code = 5 (selected edge neighbours) + (selected diagonal neighbours) + 32 if selected itself
        edge = selected[:, :-2, 1:-1] + selected[:, 2:, 1:-1] + selected[:, 1:-1, :-2] + selected[:, 1:-1, 2:]
        diag = selected[:, :-2, :-2] + selected[:, :-2, 2:] + selected[:, 2:, :-2] + selected[:, 2:, 2:]
        cell_code = (5 * edge + diag + _SELECTED_CODE * selected[:, 1:-1, 1:-1]).reshape(batch, n)  # (B, N)
        key = np.take(_LEVEL_KEY_OF_CODE, cell_code) | (tie_break_keys(rng, batch, n) << cell_bits) | cells  # (B, N)
        c1 = key < c1_below if k > 0 else np.zeros_like(free)  # step 1 never walks c1
        taken = _greedy_repulsion(key, c1, h, w, radius)
        # the first g taken cells in key order are this step's walk; keys are unique and end in the cell
        taken_key = np.where(taken, key, _NOT_FREE)
        first = np.sort(np.partition(taken_key, g - 1, axis=1)[:, :g] if g < n else taken_key, axis=1)  # (B, g)
        n_chosen = (first < _NOT_FREE).sum(axis=1)  # (B,)
        picks = first & ((1 << cell_bits) - 1)
        need = n_chosen < g
        if need.any():
            rows = np.flatnonzero(need)
            # pool order: c2, then set-aside c1 (rejected before the stop), then untried c1 (after it)
            stop = np.where(n_chosen == g, first[:, -1], _NOT_FREE)[rows, None]
            c1_r, key_r = c1[rows], key[rows]
            group = np.where(c1_r, np.where(key_r < stop, 1, 2), 0)
            in_pool = free[rows] & ~(taken[rows] & (key_r <= stop))
            picks[rows] = _farthest_fill(picks[rows], n_chosen[rows], in_pool, group, key_r,
                                         _SquaredDistances(h, w), cell_bits)
        out[:, start:start + g] = picks
        free[rows_b, picks] = False
        selected[rows_b, picks // w + 1, picks % w + 1] = 1
        start += g
    return out


def _farthest_fill(picks: np.ndarray, n_chosen: np.ndarray, in_pool: np.ndarray, group: np.ndarray,
                   key: np.ndarray, dist2_rows: _SquaredDistances, cell_bits: int) -> np.ndarray:
    """Fill columns n_chosen.. of ``picks`` (R, g) by farthest-point sampling over ``in_pool`` (R, N).
    Ties in distance go to the first cell in pool order (``group``, then ``key``); squared integer
    distances keep ties exact. A row with no cell yet starts from its pool cell of smallest key."""
    g = picks.shape[1]
    n_chosen = n_chosen.copy()
    empty = np.flatnonzero(n_chosen == 0)
    if empty.size:
        random_bits = key[empty] & ((1 << _LEVEL_SHIFT) - 1)  # drop the level: uniform over the pool
        picks[empty, 0] = np.where(in_pool[empty], random_bits, _NOT_FREE).argmin(axis=1)
        in_pool[empty, picks[empty, 0]] = False
        n_chosen[empty] = 1
    # min squared distance to the step's cells so far (-1 outside the pool); unfilled columns repeat
    # column 0, which leaves the min unchanged
    width = int(n_chosen.max())
    col = np.arange(width)
    filled = np.where(col[None] < n_chosen[:, None], picks[:, :width], picks[:, :1])  # (R, width)
    if filled.size * in_pool.shape[1] <= 1 << 22:
        dist2 = dist2_rows(filled).min(axis=1)  # (R, width, N) -> (R, N)
    else:  # column by column: bounded memory on big grids and groups
        dist2 = dist2_rows(filled[:, 0])
        for j in range(1, width):
            np.minimum(dist2, dist2_rows(filled[:, j]), out=dist2)
    dist2 = np.where(in_pool, dist2, -1)
    pool_order = (group << 61) + key  # group (2 bits) above the key's level, random bits and cell
    cell_mask = (1 << cell_bits) - 1  # a key's low bits are its cell
    all_rows = np.arange(len(picks))
    for t in range(int(n_chosen.min()), g):
        filling = np.flatnonzero(n_chosen <= t)  # rows past their walk picks (the set only grows)
        every = filling.size == len(picks)  # then skip the row gathers
        d = dist2 if every else dist2[filling]
        order = pool_order if every else pool_order[filling]
        # farthest cells of each row (few), then the first of them in pool order
        rows, cols = np.nonzero(d == d.max(axis=1, keepdims=True))
        first = np.minimum.reduceat(order[rows, cols], np.searchsorted(rows, all_rows[:filling.size]))
        pick = first & cell_mask
        np.minimum(d, dist2_rows(pick), out=d)
        d[all_rows[:filling.size], pick] = -1
        if not every:
            dist2[filling] = d
        picks[filling, t] = pick
    return picks


def build_orders(kind: str, grid: int | tuple[int, int], group_sizes: list[int] | None = None, batch: int = 1,
                 seed: int | torch.Generator | None = None, tau: float = 1.0, rho: float = 2.0,
                 device: str | torch.device = "cpu") -> torch.Tensor:
    """Dispatch on ``kind`` in :data:`ORDER_TYPES` (``group_sizes`` is needed by "locality" only)."""
    if kind == "locality":
        if group_sizes is None:
            raise ValueError("locality-aware orders need group_sizes")
        return locality_aware(grid, group_sizes, tau=tau, rho=rho, batch=batch, seed=seed, device=device)
    if kind == "raster":
        return raster(grid, batch=batch, device=device)
    if kind == "random":
        return random(grid, batch=batch, seed=seed, device=device)
    if kind == "halton":
        return halton(grid, batch=batch, seed=seed, device=device)
    raise ValueError(f"unknown order type {kind!r}; choose one of {ORDER_TYPES}")


# ----------------------------------------------------------------------------------------------------
# Interop
# ----------------------------------------------------------------------------------------------------


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
