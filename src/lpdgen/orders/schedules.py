"""Group-size schedules: how many tokens each of the K decoding steps generates.

A schedule g_1..g_K starts at 1, never decreases and sums to the token count N. The published lists
(256 and 1024 tokens) ship as package data (``assets/group_sizes.json``); other token counts get lists
from the cosine rule the published ones follow. Training draws one schedule per iteration from
:func:`all_group_sizes`; sampling picks one by step count with :func:`group_sizes`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

# Generated schedules for token counts without published ones use these fractions of N as step counts
# (the published 256-token set is exactly {8, 12, 16, 20, 24, 32, 64, 128, 256} = these x 256).
STEP_FRACTIONS: tuple[float, ...] = (1 / 32, 3 / 64, 1 / 16, 5 / 64, 3 / 32, 1 / 8, 1 / 4, 1 / 2, 1.0)


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
    set scaled). Training draws one of these uniformly per iteration."""
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
