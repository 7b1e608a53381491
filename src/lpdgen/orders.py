"""Generation orders and group-size schedules (SPEC §5): what LPD generates at each step, and where.

An *order* is a (B, N) LongTensor of raster indices: row b lists the N = h*w grid cells of image b in
generation order. A *schedule* (group-size list) g_1..g_K says how many of them each step generates.
Both are pure data, so the model, the sampler and the trainer all take them as arguments.

Why the locality-aware order is vectorised rather than a per-image loop: every sampling call builds a
fresh order per image, so the order must cost far less than a forward pass. The per-step work splits
into parts that are parallel over cells (proximity as a 3x3 stencil, one sort) and one inherently
sequential greedy walk over the candidates. The walk is the greedy independent set of the Chebyshev
conflict graph in candidate order, which we compute in a few parallel *rounds* (a candidate is decided
once every earlier conflicting candidate is), each round being one windowed min-pool over the grid.
Only farthest-point sampling stays a loop over picks, vectorised across the batch.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .io import PathLike, atomic_write

ORDER_TYPES: tuple[str, ...] = ("locality", "raster", "random", "halton")

# Proximity is a sum of 1 (edge neighbour) and 1/sqrt 2 (diagonal neighbour) terms; comparisons with tau
# allow this much rounding so thresholds such as tau = 1/sqrt 2 behave as written.
PROXIMITY_EPS = 1e-9
# Generated schedules for token counts without published ones use these fractions of N as step counts
# (the published 256-token set is exactly {8, 12, 16, 20, 24, 32, 64, 128, 256} = these x 256).
STEP_FRACTIONS: tuple[float, ...] = (1 / 32, 3 / 64, 1 / 16, 5 / 64, 3 / 32, 1 / 8, 1 / 4, 1 / 2, 1.0)
HALTON_BASES: tuple[int, int] = (2, 3)  # (rows, columns)


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
    if not isinstance(orders, torch.Tensor):
        raise ValueError(f"orders must be a torch.Tensor, got {type(orders).__name__}")
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


@lru_cache(maxsize=32)
def _coords(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) row and column of every raster index (int64)."""
    cells = torch.arange(h * w, device=device)
    return cells // w, cells % w


def _stencils(device: torch.device) -> torch.Tensor:
    """(2, 1, 3, 3) 8-neighbourhood stencils: channel 0 counts edge neighbours, channel 1 diagonal."""
    edge = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    diag = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    return torch.stack([edge, diag])[:, None].to(device)


def proximity(selected: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, N) bool selected cells -> (B, N) float64 proximity: sum over selected 8-neighbours of
    1 / euclidean distance. Computed from integer neighbour counts, so equal sums compare equal."""
    b = selected.shape[0]
    counts = F.conv2d(selected.view(b, 1, h, w).float(), _stencils(selected.device), padding=1)  # (B, 2, h, w)
    counts = counts.view(b, 2, h * w).double()
    return counts[:, 0] + counts[:, 1] * (1.0 / math.sqrt(2.0))


def _greedy_repulsion(c1: torch.Tensor, rank: torch.Tensor, h: int, w: int, radius: int) -> torch.Tensor:
    """Greedy walk of SPEC §5 step 3 without the stop at g_k: (B, N) mask of the c1 cells taken when
    walking c1 in ``rank`` order and skipping any cell within Chebyshev ``radius`` of a taken one.

    Parallel rounds: a cell is taken once no earlier undecided-or-taken cell lies in its window and
    rejected once a taken cell does. Each round decides at least the earliest undecided cell, and in
    practice a whole wave, so a handful of rounds replace the walk. The walk with a stop at g_k takes
    exactly the first g_k of these cells in rank order (a cell's fate depends only on earlier ones).
    """
    b = c1.shape[0]
    if radius < 1:
        return c1.clone()
    big = float(h * w + 1)
    rank_f = rank.float()
    undecided = c1.clone()
    taken = torch.zeros_like(c1)
    kernel, pad = 2 * radius + 1, radius
    while bool(undecided.any()):
        active = torch.where(undecided | taken, rank_f, big).view(b, 1, h, w)
        earliest = -F.max_pool2d(-active, kernel, stride=1, padding=pad)  # (B, 1, h, w) window min rank
        new_taken = undecided & (earliest.view(b, -1) == rank_f)
        taken |= new_taken
        near = F.max_pool2d(taken.view(b, 1, h, w).float(), kernel, stride=1, padding=pad).view(b, -1) > 0
        undecided &= ~(new_taken | near)
    return taken


def locality_aware(grid: int | tuple[int, int], group_sizes: list[int] | tuple[int, ...], tau: float = 1.0,
                   rho: float = 2.0, batch: int = 1, seed: int | torch.Generator | None = None,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """(batch, h*w) locality-aware generation orders (SPEC §5), each row built independently.

    Step 1 takes one cell uniformly at random (a first group larger than 1 adds farthest points to it).
    Step k ranks the free cells by proximity (sum of 1/distance to selected 8-neighbours), descending,
    ties broken by a uniform random key per cell and step; c1 = ranked cells with proximity >= tau. The
    walk over c1 takes a cell unless it lies within Chebyshev ``rho`` of a cell taken this step, and
    stops at g_k cells; any shortfall is filled by farthest-point sampling (largest minimum euclidean
    distance to this step's cells, first in pool order on ties; a random pool cell if the step is
    empty) over the pool c2 ++ set-aside ++ untried c1. Within a row, a step's cells appear in the order
    they were chosen.

    Randomness: one ``torch.rand((batch, N), dtype=float64)`` draw per step from ``seed``, used as the
    tie-break keys; the random pick of an empty step is the pool cell with the smallest key.

    Args:
        grid: side of a square grid or (h, w).
        group_sizes: g_1..g_K, each >= 1, summing to h*w.
        tau: proximity threshold (published 1).
        rho: repulsion threshold in Chebyshev distance (published 2, 3 or 4); < 1 disables repulsion.
        batch: number of orders B.
        seed: int seed, a ``torch.Generator``, or ``None`` for a fresh random seed.
        device: where to build (and return) the orders.
    Returns:
        (batch, h*w) LongTensor of raster indices.
    """
    h, w = grid_shape(grid)
    n = h * w
    sizes = validate_group_sizes(group_sizes, n)
    _check_batch(batch)
    device = torch.device(device)
    gen = make_rng(seed, device)
    rows, cols = _coords(h, w, device)
    radius = math.floor(rho) if rho >= 1 else 0
    arange = torch.arange(n, device=device).expand(batch, n)
    selected = torch.zeros((batch, n), dtype=torch.bool, device=device)
    out = torch.empty((batch, n), dtype=torch.long, device=device)
    start = 0
    for k, g in enumerate(sizes):
        keys = torch.rand((batch, n), generator=gen, dtype=torch.float64, device=device)
        free = ~selected
        prox = proximity(selected, h, w)
        # distinct proximities differ by > 0.17 (integer counts of 1 and 1/sqrt 2), so 8 * prox + key
        # sorts by proximity descending with ties in key order
        sort_key = torch.where(free, keys - 8.0 * prox, math.inf)
        ranked = sort_key.argsort(dim=1)  # (B, N) cells by rank
        rank = torch.empty_like(ranked).scatter_(1, ranked, arange)  # (B, N) rank of each cell
        if k == 0:  # step 1 is one uniformly random cell (+ farthest points), never a c1 walk
            c1 = torch.zeros_like(free)
        else:
            c1 = free & (prox >= tau - PROXIMITY_EPS)
        taken = _greedy_repulsion(c1, rank, h, w, radius)
        # in rank order: cap the walk at g taken cells; cells after the stop point are "untried"
        taken_r = taken.gather(1, ranked)  # (B, N)
        before = taken_r.long().cumsum(dim=1) - taken_r.long()  # taken cells strictly earlier in rank
        chosen_r = taken_r & (before < g)
        n_chosen = chosen_r.sum(dim=1)  # (B,)
        # this step's cells in walk order: chosen ranks first (stable), padded by FPS below
        first_ranks = (~chosen_r).to(torch.uint8).sort(dim=1, stable=True).indices[:, :g]  # (B, g)
        picks = ranked.gather(1, first_ranks)
        need = g - n_chosen
        if bool((need > 0).any()):
            c1_r = c1.gather(1, ranked)
            # pool order: c2, then set-aside c1 (rejected before the stop), then untried c1
            group = torch.where(c1_r, torch.where(before < g, 1, 2), 0)
            group = torch.where(chosen_r | ~free.gather(1, ranked), 3, group)  # 3 = not in the pool
            pool_rank_r = group * n + arange
            pool_rank = torch.empty_like(pool_rank_r).scatter_(1, ranked, pool_rank_r)  # (B, N) per cell
            picks = _farthest_fill(picks, n_chosen, pool_rank, keys, rows, cols, g, n)
        out[:, start:start + g] = picks
        selected.scatter_(1, picks, True)
        start += g
    return out


def _farthest_fill(picks: torch.Tensor, n_chosen: torch.Tensor, pool_rank: torch.Tensor, keys: torch.Tensor,
                   rows: torch.Tensor, cols: torch.Tensor, g: int, n: int) -> torch.Tensor:
    """Fill columns n_chosen.. of ``picks`` (B, g) by farthest-point sampling over the pool
    (``pool_rank`` < 3n; smaller = earlier in the pool). Squared integer distances keep ties exact."""
    big = (n + 1) ** 2  # above any squared distance on the grid
    in_pool = pool_rank < 3 * n  # (B, N)
    col = torch.arange(g, device=picks.device)
    valid = col[None] < n_chosen[:, None]  # (B, g) greedy picks
    dy = rows[picks][:, :, None] - rows[None, None]  # (B, g, N)
    dx = cols[picks][:, :, None] - cols[None, None]
    dist2 = torch.where(valid[:, :, None], dy * dy + dx * dx, big).amin(dim=1)  # (B, N) min over picks
    empty_pick = torch.where(in_pool, keys, math.inf).argmin(dim=1)  # random pool cell for empty steps
    for t in range(int(n_chosen.min()), g):
        score = torch.where(in_pool, dist2 * (3 * n + 1) - pool_rank, -1)  # far first, then pool order
        pick = torch.where(n_chosen == 0, empty_pick, score.argmax(dim=1)) if t == 0 else score.argmax(dim=1)
        active = n_chosen <= t  # rows still filling
        pick = torch.where(active, pick, picks[:, t])
        picks[:, t] = pick
        taken_now = torch.zeros_like(in_pool).scatter_(1, pick[:, None], active[:, None])
        in_pool &= ~taken_now
        new_d = (rows[pick][:, None] - rows[None]) ** 2 + (cols[pick][:, None] - cols[None]) ** 2  # (B, N)
        dist2 = torch.where(active[:, None], torch.minimum(dist2, new_d), dist2)
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
