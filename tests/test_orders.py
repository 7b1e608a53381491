"""Tests of lpdgen.orders: group-size schedules, the four order types, validation and file interop.

The locality-aware builder is checked three ways: identical output to the loop reference in
lpdgen.orders.reference for the same seed (hypothesis-driven cases), the hard properties of the locality-aware rule on
thousands of generated orders, and a chi-square test that the first cell is uniform.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from lpdgen import orders as O
from lpdgen.orders import locality as engine
from lpdgen.orders.reference import locality_aware_reference


def published_lists() -> dict[tuple[int, int], list[int]]:
    """The package data file, read directly (not through the module under test)."""
    raw = json.loads(resources.files("lpdgen").joinpath("assets/group_sizes.json").read_text())["schedules"]
    return {(sum(v), int(s)): v for lists in raw.values() for s, v in lists.items()}


def check_schedule(sizes: list[int], num_tokens: int, steps: int) -> None:
    assert len(sizes) == steps
    assert sum(sizes) == num_tokens
    assert sizes[0] == 1 or steps == 1
    assert min(sizes) >= 1
    assert all(a <= b for a, b in pairwise(sizes)), sizes


# ---------------------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------------------


def test_published_schedules_are_reproduced_exactly():
    published = published_lists()
    assert len(published) == 23  # 9 lists at 256 tokens, 14 at 1024
    for (n, steps), sizes in published.items():
        assert O.group_sizes(n, steps) == sizes


def test_cosine_rule_is_within_one_token_per_step_of_every_published_list():
    # the rule never looks at the published file; this measures how close it comes
    worst = 0
    for (n, steps), sizes in published_lists().items():
        rule = O.cosine_group_sizes(n, steps)
        check_schedule(rule, n, steps)
        worst = max(worst, max(abs(a - b) for a, b in zip(rule, sizes)))
    assert worst == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 1024).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))))
@example((1, 1))
@example((256, 20))
@example((400, 399))
@example((1024, 1024))
def test_generated_schedules_keep_the_invariants(case):
    n, steps = case
    check_schedule(O.group_sizes(n, steps), n, steps)


@pytest.mark.slow
def test_generated_schedules_keep_the_invariants_for_every_pair_up_to_1024():
    for n in range(1, 1025):
        for steps in range(1, n + 1):
            check_schedule(O.cosine_group_sizes(n, steps), n, steps)


def test_schedules_grow_like_the_published_ones():
    sizes = O.group_sizes(400, 20)  # 20x20 grid: no published list
    assert sizes[0] == 1 and sizes[-1] > 5 * sizes[1]
    assert O.group_sizes(7, 7) == [1] * 7
    assert O.group_sizes(7, 1) == [7]


@pytest.mark.parametrize("n, steps", [(256, 0), (256, 257), (256, -3), (0, 1), (256, 2.5)])
def test_bad_schedule_arguments_raise(n, steps):
    with pytest.raises(ValueError, match="steps|num_tokens"):
        O.group_sizes(n, steps)


def test_all_group_sizes_lists_published_and_generated_sets():
    assert [len(g) for g in O.all_group_sizes(256)] == [8, 12, 16, 20, 24, 32, 64, 128, 256]
    assert [len(g) for g in O.all_group_sizes(1024)][:3] == [32, 40, 48]
    generated = O.all_group_sizes(400)
    assert [len(g) for g in generated] == [12, 19, 25, 31, 38, 50, 100, 200, 400]
    for sizes in generated + O.all_group_sizes(3):
        check_schedule(sizes, sum(sizes), len(sizes))


def test_validate_group_sizes_names_the_problem():
    assert O.validate_group_sizes(torch.tensor([1, 2, 3]), 6) == [1, 2, 3]
    with pytest.raises(ValueError, match="sum to 5"):
        O.validate_group_sizes([1, 4], 6)
    with pytest.raises(ValueError, match=">= 1"):
        O.validate_group_sizes([1, 0, 5], 6)
    with pytest.raises(ValueError, match=">= 1"):
        O.validate_group_sizes([3, -1, 4], 6)
    with pytest.raises(ValueError, match="empty"):
        O.validate_group_sizes([], 6)
    with pytest.raises(ValueError, match="integers"):
        O.validate_group_sizes([1.5, 4.5], 6)


def test_validate_orders_accepts_permutations_and_names_bad_rows():
    good = torch.stack([torch.randperm(9, generator=torch.Generator().manual_seed(i)) for i in range(4)])
    O.validate_orders(good, 9)
    bad = good.clone()
    bad[2, 0] = bad[2, 1]
    with pytest.raises(ValueError, match=r"rows \[2\]"):
        O.validate_orders(bad, 9)
    with pytest.raises(ValueError, match="shape"):
        O.validate_orders(good, 8)
    with pytest.raises(ValueError, match="shape"):
        O.validate_orders(good[0], 9)
    with pytest.raises(ValueError, match="integer"):
        O.validate_orders(good.float(), 9)
    with pytest.raises(ValueError, match="permutations"):
        O.validate_orders(good + 1, 9)


# ---------------------------------------------------------------------------------------------------
# locality-aware orders: fast == loop reference
# ---------------------------------------------------------------------------------------------------


@st.composite
def order_cases(draw):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    n = h * w
    steps = draw(st.integers(1, n))
    if draw(st.booleans()):
        sizes = O.group_sizes(n, steps)
    else:  # any composition of n, first group possibly > 1
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=steps - 1))) if n > 1 else []
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, n])]
    tau = draw(st.sampled_from([0.0, 0.5, 1 / math.sqrt(2), 1.0, 1.5, 2.0, 3.0]))
    rho = draw(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0]))
    return h, w, sizes, tau, rho, draw(st.integers(1, 4)), draw(st.integers(0, 2**31))


def locality_with_walk(vector_walk: bool, *args, **kwargs) -> torch.Tensor:
    """``O.locality_aware`` with the walk forced to its vectorised (or its plain-Python, few-row) form."""
    saved = engine._PYTHON_WALK_MAX_ROWS
    engine._PYTHON_WALK_MAX_ROWS = 0 if vector_walk else 1 << 30
    try:
        return O.locality_aware(*args, **kwargs)
    finally:
        engine._PYTHON_WALK_MAX_ROWS = saved


@settings(max_examples=300, deadline=None)
@given(order_cases(), st.booleans())
def test_fast_orders_equal_the_loop_reference(case, vector_walk):
    h, w, sizes, tau, rho, batch, seed = case
    fast = locality_with_walk(vector_walk, (h, w), sizes, tau=tau, rho=rho, batch=batch, seed=seed)
    assert torch.equal(fast, locality_aware_reference(h, w, sizes, tau=tau, rho=rho, batch=batch, seed=seed))


@pytest.mark.parametrize("vector_walk", [False, True])
@pytest.mark.parametrize("side, steps, rho", [(16, 20, 2.0), (16, 8, 3.0), (12, 144, 2.0)])
def test_fast_orders_equal_the_loop_reference_at_published_settings(side, steps, rho, vector_walk):
    sizes = O.group_sizes(side * side, steps)
    fast = locality_with_walk(vector_walk, side, sizes, rho=rho, batch=3, seed=11)
    assert torch.equal(fast, locality_aware_reference(side, side, sizes, rho=rho, batch=3, seed=11))


@pytest.mark.parametrize("block_cells", [None, 1])
def test_fast_orders_equal_the_reference_across_row_chunks(monkeypatch, block_cells):
    # one block holding both chunks (jumped-ahead key streams), or one block per chunk
    if block_cells is not None:
        monkeypatch.setattr(engine, "BLOCK_CELLS", block_cells)
    sizes = O.group_sizes(25, 6)
    batch = O.ROW_CHUNK + 7
    fast = O.locality_aware(5, sizes, batch=batch, seed=5)
    assert torch.equal(fast, locality_aware_reference(5, 5, sizes, batch=batch, seed=5))


def test_distance_rows_from_coordinates_equal_the_table(monkeypatch):
    sizes = O.group_sizes(144, 10)
    with_table = O.locality_aware(12, sizes, batch=6, seed=2)
    monkeypatch.setattr(engine, "DISTANCE_TABLE_MAX_CELLS", 0)
    assert torch.equal(O.locality_aware(12, sizes, batch=6, seed=2), with_table)


def test_locality_orders_on_a_large_non_square_grid():
    orders = O.locality_aware((48, 72), O.group_sizes(48 * 72, 40), rho=4.0, batch=2, seed=0)
    O.validate_orders(orders, 48 * 72)


def test_locality_orders_are_seeded_and_differ_per_row():
    sizes = O.group_sizes(256, 20)
    a = O.locality_aware(16, sizes, batch=8, seed=3)
    assert torch.equal(a, O.locality_aware(16, sizes, batch=8, seed=3))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(O.locality_aware(16, sizes, batch=2, seed=g1), O.locality_aware(16, sizes, batch=2, seed=g2))
    assert len({tuple(r) for r in a.tolist()}) == 8
    assert not torch.equal(a, O.locality_aware(16, sizes, batch=8, seed=4))


@pytest.mark.parametrize("as_generators", [False, True])
def test_per_row_seeds_give_each_row_its_batch_one_order(monkeypatch, as_generators):
    # 70 rows in blocks of one chunk (64 rows): the per-row streams cross a block boundary; the batch
    # walks c1 vectorised, the batch-1 calls in plain Python
    monkeypatch.setattr(engine, "BLOCK_CELLS", 1)
    sizes = O.group_sizes(36, 7)
    seeds = [3 * i + 1 for i in range(70)]

    def seed_of(s: int) -> int | torch.Generator:
        return torch.Generator().manual_seed(s) if as_generators else s

    batch_gens = [seed_of(s) for s in seeds]
    single_gens = [seed_of(s) for s in seeds]
    orders = O.locality_aware(6, sizes, rho=1.0, seed=batch_gens)
    singles = torch.cat([O.locality_aware(6, sizes, rho=1.0, batch=1, seed=g) for g in single_gens])
    assert orders.shape == (70, 36) and torch.equal(orders, singles)
    if as_generators:  # each generator is advanced exactly as by its own batch-1 call
        assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(batch_gens, single_gens))
    else:  # an int array (or tensor) of seeds is the same as the list
        assert torch.equal(O.locality_aware(6, sizes, rho=1.0, batch=3, seed=np.array(seeds[:3])), orders[:3])
        assert torch.equal(O.locality_aware(6, sizes, rho=1.0, seed=torch.tensor(seeds[:3])), orders[:3])


@settings(max_examples=40, deadline=None)
@given(order_cases(), st.lists(st.integers(0, 2**31), min_size=1, max_size=5))
def test_fast_orders_with_per_row_seeds_equal_the_loop_reference(case, seeds):
    h, w, sizes, tau, rho, _, _ = case
    fast = O.locality_aware((h, w), sizes, tau=tau, rho=rho, seed=seeds)
    assert torch.equal(fast, locality_aware_reference(h, w, sizes, tau=tau, rho=rho, seed=seeds))


def test_per_row_seeds_reject_bad_input():
    sizes = O.group_sizes(16, 4)
    with pytest.raises(ValueError, match="3 per-row seeds for batch=2"):
        O.locality_aware(4, sizes, batch=2, seed=[1, 2, 3])
    with pytest.raises(ValueError, match="ints or torch.Generators"):
        O.locality_aware(4, sizes, seed=[1, 2.5])
    with pytest.raises(ValueError, match="one-dimensional"):
        O.locality_aware(4, sizes, seed=np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="batch"):
        O.locality_aware(4, sizes, seed=[])


def test_locality_aware_rejects_bad_input():
    with pytest.raises(ValueError, match="sum to 255"):
        O.locality_aware(16, [1] * 255)
    with pytest.raises(ValueError, match="grid"):
        O.locality_aware((4,), [1] * 4)
    with pytest.raises(ValueError, match="grid"):
        O.locality_aware(0, [1])
    with pytest.raises(ValueError, match="batch"):
        O.locality_aware(4, O.group_sizes(16, 4), batch=0)


# ---------------------------------------------------------------------------------------------------
# locality-aware orders: hard properties on thousands of orders
# ---------------------------------------------------------------------------------------------------


def proximity_map(selected: np.ndarray) -> np.ndarray:
    """(h, w) bool -> (h, w) proximity, by the definition of proximity (independent of the library)."""
    h, w = selected.shape
    padded = np.pad(selected.astype(float), 1)
    prox = np.zeros((h, w))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (dy, dx) != (0, 0):
                prox += padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] / math.hypot(dy, dx)
    return prox


def min_dist2(cell: int, others: list[int], w: int) -> int:
    """Smallest squared euclidean distance from ``cell`` to ``others`` on a grid of width w."""
    return min((cell // w - s // w) ** 2 + (cell % w - s % w) ** 2 for s in others)


def check_locality_properties(order: list[int], h: int, w: int, sizes: list[int], tau: float, rho: float) -> None:
    """The locality-aware rule's properties of one order, checked from the order alone.

    The walk's picks W are the longest prefix of a step whose cells are in c1 and pairwise farther than
    rho (Chebyshev). Then: W is in non-increasing proximity; c1 cells never come after c2 cells... unless
    the walk ran out; and every c1 cell left out of W, that the walk would have reached, was repelled.
    """
    assert sorted(order) == list(range(h * w))
    selected = np.zeros((h, w), dtype=bool)
    start = 0
    for k, g in enumerate(sizes):
        step = order[start : start + g]
        start += g
        prox = proximity_map(selected).ravel()
        free = ~selected.ravel()
        in_c1 = (prox >= tau - 1e-9) & free if k > 0 else np.zeros(h * w, dtype=bool)

        def near(a: int, b: int) -> bool:
            return max(abs(a // w - b // w), abs(a % w - b % w)) <= rho

        walk: list[int] = []
        for c in step:
            if not in_c1[c] or any(near(c, s) for s in walk):
                break
            walk.append(c)
        p_walk = [prox[c] for c in walk]
        assert all(a >= b - 1e-9 for a, b in pairwise(p_walk)), "walk not in proximity order"
        last = p_walk[-1] if walk else math.inf
        for c in np.flatnonzero(in_c1):
            if c in walk:
                continue
            # a c1 cell ranked before the walk's last pick, or any c1 cell when the walk fell short,
            # must have been repelled by an earlier pick of the walk
            if len(walk) < g or prox[c] > last + 1e-9:
                assert any(near(c, s) for s in walk if prox[s] >= prox[c] - 1e-9), (k, c, walk)
        if len(walk) < g and walk:
            rest = step[len(walk) :]
            # FPS continues: the first fill cell is at least as far from the walk as every pool cell
            pool = [c for c in np.flatnonzero(free) if c not in walk]
            assert min_dist2(rest[0], walk, w) == max(min_dist2(c, walk, w) for c in pool)
        selected.ravel()[step] = True


@pytest.mark.parametrize(
    "h, w, steps, tau, rho",
    [
        (8, 8, 10, 1.0, 2.0),
        (6, 9, 12, 1.0, 1.0),
        (7, 7, 7, 0.5, 3.0),
        (5, 12, 20, 1.5, 2.0),
        (10, 10, 16, 1.0, 0.0),
    ],
)
def test_locality_orders_keep_the_hard_properties(h, w, steps, tau, rho):
    sizes = O.group_sizes(h * w, steps)
    orders = O.locality_aware((h, w), sizes, tau=tau, rho=rho, batch=400, seed=h * 100 + w)
    O.validate_orders(orders, h * w)
    for order in orders.tolist():
        check_locality_properties(order, h, w, sizes, tau, rho)


def test_property_check_rejects_orders_that_break_the_rules():
    sizes = O.group_sizes(64, 10)
    with pytest.raises(AssertionError):
        for order in O.random(8, batch=20, seed=0).tolist():
            check_locality_properties(order, 8, 8, sizes, 1.0, 2.0)
    with pytest.raises(AssertionError):  # built without repulsion, checked with it
        for order in O.locality_aware(8, sizes, rho=0.0, batch=20, seed=0).tolist():
            check_locality_properties(order, 8, 8, sizes, 1.0, 2.0)


def test_first_group_larger_than_one_is_a_random_cell_plus_farthest_points():
    sizes = [4, 12]
    orders = O.locality_aware(4, sizes, batch=200, seed=1)
    for order in orders.tolist():
        first = order[:4]
        for i in range(1, 4):  # each next cell maximises the min squared distance to the earlier ones
            best = max(min_dist2(c, first[:i], 4) for c in range(16) if c not in first[:i])
            assert min_dist2(first[i], first[:i], 4) == best


def test_first_cell_is_uniform_over_the_grid():
    orders = O.locality_aware((8, 6), [1, 47], batch=9600, seed=123)  # 200 expected per cell
    counts = np.bincount(orders[:, 0].numpy(), minlength=48)
    assert chisquare(counts).pvalue > 1e-3


def test_locality_orders_touch_known_cells_more_than_random_orders():
    # the point of the method: after step 1, a step's cells grow next to what is already known
    sizes = O.group_sizes(256, 20)

    def share_touching_known(orders: torch.Tensor) -> float:
        touching = []
        for order in orders.tolist():
            selected = np.zeros((16, 16), dtype=bool)
            start = 0
            for k, g in enumerate(sizes):
                step = order[start : start + g]
                start += g
                padded = np.pad(selected, 1)
                if k > 0:
                    touching += [padded[c // 16 : c // 16 + 3, c % 16 : c % 16 + 3].any() for c in step]
                selected.ravel()[step] = True
        return float(np.mean(touching))

    local = share_touching_known(O.locality_aware(16, sizes, batch=20, seed=0))
    assert local > 0.93
    assert local > share_touching_known(O.random(16, batch=20, seed=0)) + 0.05


# ---------------------------------------------------------------------------------------------------
# raster, random, Halton
# ---------------------------------------------------------------------------------------------------


def test_raster_orders_are_row_major():
    assert torch.equal(O.raster((2, 3), batch=2), torch.tensor([[0, 1, 2, 3, 4, 5]] * 2))


def test_random_orders_are_seeded_permutations():
    a = O.random((5, 7), batch=50, seed=2)
    O.validate_orders(a, 35)
    assert torch.equal(a, O.random((5, 7), batch=50, seed=2))
    assert len({tuple(r) for r in a.tolist()}) == 50
    counts = np.bincount(O.random(4, batch=8000, seed=1)[:, 0].numpy(), minlength=16)
    assert chisquare(counts).pvalue > 1e-3


def halton_reference(h: int, w: int, shift_y: float, shift_x: float) -> list[int]:
    """Loop version: cells in order of the first (shifted) Halton point (base 2 rows, 3 columns)."""

    def radical_inverse(i: int, base: int) -> float:
        out, f = 0.0, 1.0 / base
        while i:
            out += f * (i % base)
            i //= base
            f /= base
        return out

    order, seen, i = [], set(), 1
    while len(order) < h * w:
        y = (radical_inverse(i, 2) + shift_y) % 1.0
        x = (radical_inverse(i, 3) + shift_x) % 1.0
        cell = min(int(y * h), h - 1) * w + min(int(x * w), w - 1)
        if cell not in seen:
            seen.add(cell)
            order.append(cell)
        i += 1
    return order


def test_halton_orders_match_a_loop_reference():
    for h, w, seed in [(16, 16, 0), (5, 9, 1), (1, 7, 2), (32, 32, 3)]:
        orders = O.halton((h, w), batch=3, seed=seed)
        O.validate_orders(orders, h * w)
        shifts = torch.rand((3, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        for row, (sy, sx) in zip(orders.tolist(), shifts.tolist()):
            assert row == halton_reference(h, w, sy, sx)


def test_halton_prefixes_are_more_even_than_random_ones():
    def mean_min_gap(orders: torch.Tensor, m: int = 16) -> float:
        y, x = orders[:, :m] // 16, orders[:, :m] % 16  # (B, m)
        d = torch.maximum((y[:, :, None] - y[:, None]).abs(), (x[:, :, None] - x[:, None]).abs()).float()
        d = d + torch.eye(m) * 99
        return d.amin(dim=(1, 2)).mean().item()

    assert mean_min_gap(O.halton(16, batch=64, seed=0)) > mean_min_gap(O.random(16, batch=64, seed=0)) + 0.5


def test_build_orders_dispatches_and_rejects_unknown_types():
    sizes = O.group_sizes(16, 4)
    for kind in O.ORDER_TYPES:
        O.validate_orders(O.build_orders(kind, 4, sizes, batch=2, seed=0), 16)
    with pytest.raises(ValueError, match="unknown order type"):
        O.build_orders("spiral", 4, sizes)
    with pytest.raises(ValueError, match="group_sizes"):
        O.build_orders("locality", 4, None)


@pytest.mark.parametrize("kind", O.ORDER_TYPES)
def test_build_orders_takes_one_seed_per_row_for_every_type(kind):
    sizes = O.group_sizes(20, 5)
    orders = O.build_orders(kind, (4, 5), sizes, seed=[7, 8, 9])
    singles = torch.cat([O.build_orders(kind, (4, 5), sizes, batch=1, seed=s) for s in (7, 8, 9)])
    assert orders.shape == (3, 20) and torch.equal(orders, singles)
    gens = [torch.Generator().manual_seed(s) for s in (7, 8, 9)]
    single_gens = [torch.Generator().manual_seed(s) for s in (7, 8, 9)]
    assert torch.equal(
        O.build_orders(kind, (4, 5), sizes, seed=gens),
        torch.cat([O.build_orders(kind, (4, 5), sizes, seed=g) for g in single_gens]),
    )
    if kind != "raster":
        assert len({tuple(r) for r in orders.tolist()}) == 3


# ---------------------------------------------------------------------------------------------------
# interop
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".npy"])
def test_orders_round_trip_through_files(tmp_path, suffix):
    orders = O.locality_aware(6, O.group_sizes(36, 6), batch=5, seed=0)
    path = O.save_orders(orders, tmp_path / f"orders{suffix}")
    loaded = O.load_orders(path)
    assert loaded.dtype == torch.long and torch.equal(loaded, orders)


def test_json_orders_are_a_plain_list_of_lists(tmp_path):
    path = O.save_orders(O.raster(2, batch=2), tmp_path / "o.json")
    assert json.loads(path.read_text()) == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_loading_bad_order_files_raises_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        O.load_orders(tmp_path / "missing.json")
    (tmp_path / "a.json").write_text("[[0, 1], [1")
    with pytest.raises(ValueError, match="JSON"):
        O.load_orders(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("[[0, 1], [1, 1]]")
    with pytest.raises(ValueError, match="permutations"):
        O.load_orders(tmp_path / "b.json")
    np.save(tmp_path / "c.npy", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="integers"):
        O.load_orders(tmp_path / "c.npy")
    with pytest.raises(ValueError, match=".json or .npy"):
        O.save_orders(O.raster(2), tmp_path / "o.txt")
