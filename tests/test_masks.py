"""The vectorised masks agree with a per-pair reading of the attention rules in docs/decoding.md."""

from __future__ import annotations

import torch
from conftest import random_schedule

from lpdgen.masks import decode_steps, training_mask


def naive_training_mask(group_sizes: list[int]) -> torch.Tensor:
    """The training attention rules, one pair at a time."""
    step = []
    for k, g in enumerate(group_sizes, start=1):
        step += [k] * g
    n = len(step)
    n_ctx = n - group_sizes[-1]
    tokens = [("ctx", 0)] + [("ctx", step[j]) for j in range(n_ctx)] + [("query", step[j]) for j in range(n)]
    size = len(tokens)
    mask = torch.zeros(size, size, dtype=torch.bool)
    for i, (kind_i, g_i) in enumerate(tokens):
        for j, (kind_j, g_j) in enumerate(tokens):
            if kind_i == "ctx":
                allowed = kind_j == "ctx" and g_j <= g_i
            else:
                allowed = (kind_j == "ctx" and g_j <= g_i - 1) or (kind_j == "query" and g_j == g_i)
            mask[i, j] = allowed
    return mask


def test_training_mask_matches_per_pair_rules_on_random_schedules():
    gen = torch.Generator().manual_seed(1)
    for _ in range(150):
        n = int(torch.randint(1, 40, (1,), generator=gen))
        sizes = random_schedule(n, gen)
        got = training_mask(tuple(sizes))
        assert got.shape == (1 + 2 * n - sizes[-1],) * 2
        assert torch.equal(got, naive_training_mask(sizes)), sizes


def test_training_mask_for_raster_steps_is_causal_context_plus_diagonal_queries():
    n = 6
    mask = training_mask(tuple([1] * n))
    ctx = n  # class + first n - 1 tokens
    assert torch.equal(mask[:ctx, :ctx], torch.ones(ctx, ctx, dtype=torch.bool).tril())
    # query j sees the class token and tokens < j, and itself only among the queries
    assert torch.equal(mask[ctx:, :ctx], torch.ones(n, ctx, dtype=torch.bool).tril())
    assert torch.equal(mask[ctx:, ctx:], torch.eye(n, dtype=torch.bool))


def naive_step_visibility(group_sizes: list[int], k: int) -> torch.Tensor:
    """The decoding attention rule for step k (0-based): rows = fed tokens, cols = cache slots up to C_k."""
    c = [1]
    for g in group_sizes:
        c.append(c[-1] + g)
    ctx_slots = [0] if k == 0 else list(range(c[k - 1], c[k]))
    q_slots = list(range(c[k], c[k + 1]))
    rows = []
    rows += [[s < c[k] for s in range(c[k + 1])]] * len(ctx_slots)  # context: every slot before its block's end
    rows += [[True] * c[k + 1]] * len(q_slots)
    return torch.tensor(rows, dtype=torch.bool)


def test_decode_steps_slots_and_masks_follow_spec():
    gen = torch.Generator().manual_seed(2)
    for _ in range(60):
        n = int(torch.randint(1, 30, (1,), generator=gen))
        sizes = random_schedule(n, gen)
        steps = decode_steps(tuple(sizes))
        assert len(steps) == len(sizes)
        for k, s in enumerate(steps):
            assert torch.equal(s.mask, naive_step_visibility(sizes, k))
            assert s.slot_end - s.slot_start == s.n_ctx_in + (s.q_end - s.q_start)
        assert steps[0].slot_start == 0 and steps[-1].slot_end == n + 1
        # step k overwrites exactly the slots where step k - 1 wrote its queries' K/V
        for prev, cur in zip(steps[:-1], steps[1:]):
            assert cur.slot_start == prev.slot_end - (prev.q_end - prev.q_start)
