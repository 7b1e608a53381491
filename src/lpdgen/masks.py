"""Attention masks of LPD, as pure functions of the group-size list (SPEC §3 and §4).

Why a module of its own: the masks are the whole trick of LPD - context tokens are block-causal,
position queries see the context of earlier steps and the other queries of their own step - and both
the training forward and the cached decoder derive theirs from the same few index vectors here. Masks
depend only on the schedule, so they are built once per schedule (vectorised, no loops over tokens)
and cached. Convention everywhere: ``True`` = may attend (what ``scaled_dot_product_attention`` takes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch


def step_of_position(group_sizes: tuple[int, ...]) -> torch.Tensor:
    """(N,) step index k in 1..K of each generation-order position (position j belongs to step k when
    g_1 + ... + g_{k-1} <= j < g_1 + ... + g_k)."""
    sizes = torch.tensor(group_sizes, dtype=torch.long)
    return torch.repeat_interleave(torch.arange(1, len(group_sizes) + 1), sizes)


@lru_cache(maxsize=64)
def _training_mask_cpu(group_sizes: tuple[int, ...]) -> torch.Tensor:
    step = step_of_position(group_sizes)
    n_ctx = int(step.numel()) - group_sizes[-1]  # the last group is never context
    # Every token of the training sequence gets a group id and a query flag:
    # context stream [class, x_pi(1..N-g_K)] has groups [0, step_1 .. step_{N-g_K}], queries [step_1 .. step_N].
    group = torch.cat([torch.zeros(1, dtype=torch.long), step[:n_ctx], step])
    is_query = torch.cat([torch.zeros(1 + n_ctx, dtype=torch.bool), torch.ones(step.numel(), dtype=torch.bool)])
    gq, gk = group[:, None], group[None, :]  # (L, 1) rows attend, (1, L) keys
    q_row, q_key = is_query[:, None], is_query[None, :]
    context_rule = ~q_row & ~q_key & (gk <= gq)  # block-causal over context groups
    query_to_context = q_row & ~q_key & (gk <= gq - 1)  # queries see earlier steps' context
    query_to_query = q_row & q_key & (gk == gq)  # mutual visibility within a step
    return context_rule | query_to_context | query_to_query


def training_mask(group_sizes: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """(L, L) boolean mask of the teacher-forcing sequence ``context ++ queries`` with
    L = 1 + 2N - g_K (SPEC §3). Cached per schedule; a fresh device copy is cheap next to a forward."""
    return _training_mask_cpu(tuple(group_sizes)).to(device)


@dataclass(frozen=True)
class DecodeStep:
    """What one decoding step feeds (SPEC §4). Positions are indices into the generation order; slots
    are KV-cache indices (slot 0 = class token, slot t = t-th token in generation order)."""

    ctx_start: int  # generation-order positions [ctx_start, q_start) are fed back as context (none at step 1)
    q_start: int  # queries for positions [q_start, q_end)
    q_end: int
    slot_start: int  # first cache slot written this step; the block covers slots [slot_start, slot_end)
    slot_end: int
    mask: torch.Tensor  # (n_ctx_in + g_k, slot_end) bool: context rows see slots < C_{k-1}, queries see all

    @property
    def n_ctx_in(self) -> int:
        """How many context tokens this step feeds (1 = the class token at step 1)."""
        return 1 if self.ctx_start == self.q_start else self.q_start - self.ctx_start


@lru_cache(maxsize=64)
def decode_steps(group_sizes: tuple[int, ...]) -> tuple[DecodeStep, ...]:
    """The per-step slot ranges and masks of cached decoding for a schedule (computed once, cached).

    With C_0 = 1, C_k = 1 + g_1 + ... + g_k, step k writes its context into slots [C_{k-2}, C_{k-1})
    (the class token into slot 0 at step 1) and its g_k queries into [C_{k-1}, C_k); every token sees all
    slots before the end of its own block.
    """
    steps = []
    q_start = 0
    prev_start = 0
    for k, g in enumerate(group_sizes):
        q_end = q_start + g
        ctx_start = prev_start if k > 0 else 0
        slot_start = 0 if k == 0 else 1 + ctx_start  # C_{k-2}, with C_{-1} = 0 for the class slot
        n_ctx = 1 if k == 0 else q_start - ctx_start
        slot_end = 1 + q_end  # C_k
        rows = torch.arange(n_ctx + g)[:, None]
        cols = torch.arange(slot_end)[None, :]
        visible_end = torch.where(rows < n_ctx, slot_start + n_ctx, slot_end)  # C_{k-1} for context rows
        steps.append(DecodeStep(ctx_start, q_start, q_end, slot_start, slot_end, cols < visible_end))
        prev_start, q_start = q_start, q_end
    return tuple(steps)
