"""Attention masks of LPD, as pure functions of the group-size list (training: docs/decoding.md "Sequences and masks"; decoding: one step per group).

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


def training_layout(group_sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Group id and query flag of every token of the teacher-forcing sequence ``context ++ queries``:
    context [class, x_pi(1..N-g_K)] has groups [0, step_1 .. step_{N-g_K}], queries [step_1 .. step_N]."""
    step = step_of_position(group_sizes)
    n_ctx = int(step.numel()) - group_sizes[-1]  # the last group is never context
    group = torch.cat([torch.zeros(1, dtype=torch.long), step[:n_ctx], step])
    is_query = torch.cat([torch.zeros(1 + n_ctx, dtype=torch.bool), torch.ones(step.numel(), dtype=torch.bool)])
    return group, is_query


def visible(g_row: torch.Tensor, q_row: torch.Tensor, g_key: torch.Tensor, q_key: torch.Tensor) -> torch.Tensor:
    """The training attention rule (docs/decoding.md), elementwise on broadcastable group ids and query flags."""
    context_rule = ~q_row & ~q_key & (g_key <= g_row)  # block-causal over context groups
    query_to_context = q_row & ~q_key & (g_key < g_row)  # queries see earlier steps' context
    query_to_query = q_row & q_key & (g_key == g_row)  # mutual visibility within a step
    return context_rule | query_to_context | query_to_query


@lru_cache(maxsize=32)
def _training_mask(group_sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    group, is_query = training_layout(group_sizes)
    mask = visible(group[:, None], is_query[:, None], group[None, :], is_query[None, :])  # (L, L)
    return mask.to(device)


def training_mask(group_sizes: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """(L, L) boolean mask of the teacher-forcing sequence ``context ++ queries`` with
    L = 1 + 2N - g_K (the last group is never fed back as context). Built once per (schedule, device) and cached: training draws from a
    handful of schedules, so after the first iterations no step builds or copies a mask."""
    return _training_mask(tuple(group_sizes), torch.device(device))


def flex_block_mask(group_sizes: tuple[int, ...], device: torch.device | str):
    """The training mask as a FlexAttention ``BlockMask`` (CUDA training: fully-masked blocks are
    skipped instead of computed). Same rule as :func:`training_mask`, via :func:`visible`; cached."""
    return _flex_block_mask(tuple(group_sizes), torch.device(device))


@lru_cache(maxsize=32)
def _flex_block_mask(group_sizes: tuple[int, ...], device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    group, is_query = (t.to(device) for t in training_layout(group_sizes))
    length = group.numel()

    def mask_mod(b, h, q_idx, kv_idx):
        return visible(group[q_idx], is_query[q_idx], group[kv_idx], is_query[kv_idx])

    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=length, KV_LEN=length, device=device)


@dataclass(frozen=True)
class DecodeStep:
    """What one decoding step feeds (docs/decoding.md). Positions are indices into the generation order; slots
    are KV-cache indices (slot 0 = class token, slot t = t-th token in generation order)."""

    ctx_start: int  # generation-order positions [ctx_start, q_start) are fed back as context (none at step 1)
    q_start: int  # queries for positions [q_start, q_end)
    q_end: int
    slot_start: int  # first cache slot written this step; the block covers slots [slot_start, slot_end)
    slot_end: int
    mask: torch.Tensor  # (n_ctx_in + g_k, slot_end) bool: context rows see slots < C_{k-1}, queries see all

    @property
    def n_ctx_in(self) -> int:
        """How many context tokens this step feeds (1 = the class token at step 1; 1 + P when P known
        tokens are prefilled with it)."""
        return self.slot_end - self.slot_start - (self.q_end - self.q_start)


@lru_cache(maxsize=64)
def decode_steps(group_sizes: tuple[int, ...], prefill: int = 0) -> tuple[DecodeStep, ...]:
    """The per-step slot ranges and masks of cached decoding for a schedule (computed once, cached).

    With C_0 = 1, C_k = 1 + g_1 + ... + g_k, step k writes its context into slots [C_{k-2}, C_{k-1})
    (the class token into slot 0 at step 1) and its g_k queries into [C_{k-1}, C_k); every token sees all
    slots before the end of its own block.

    ``prefill`` = P > 0 (editing): the first P generation-order positions are known tokens, fed as
    context together with the class token at step 1 (one forward pass, slots [0, 1 + P)), and
    ``group_sizes`` schedule the other positions only (C_0 = 1 + P). The step-1 mask is the training
    forward's with the known tokens as its first context group: the class token sees itself, the known
    tokens see the class token and each other, the queries see all of them.
    """
    steps = []
    q_start = prefill
    ctx_start = 0
    for k, g in enumerate(group_sizes):
        q_end = q_start + g
        slot_start = 0 if k == 0 else 1 + ctx_start  # C_{k-2}, with C_{-1} = 0 for the class slot
        n_ctx = 1 + prefill if k == 0 else q_start - ctx_start
        slot_end = 1 + q_end  # C_k
        rows = torch.arange(n_ctx + g)[:, None]
        cols = torch.arange(slot_end)[None, :]
        context_end = torch.where(rows == 0, 1, 1 + prefill) if k == 0 else slot_start + n_ctx  # C_{k-1}
        visible_end = torch.where(rows < n_ctx, context_end, slot_end)
        steps.append(DecodeStep(ctx_start, q_start, q_end, slot_start, slot_end, cols < visible_end))
        ctx_start, q_start = q_start, q_end
    return tuple(steps)


# Decoding steps attend over the cache in spans of this many slots (the last span ends at 1 + N): the
# extra work stays under one span while a 256-token image has only 5 distinct key lengths (compiled
# graphs / CUDA graphs per shape). Why 64, with the measurements: docs/engine.md.
KV_SPAN = 64


@dataclass(frozen=True)
class PlannedStep:
    """One decoding step as the loop runs it, on the decoding device: the generation-order positions it
    queries, the cache slots it writes and its mask over the cache. Built by :func:`decode_plan`."""

    q_start: int  # queries for generation-order positions [q_start, q_end)
    q_end: int
    slots: torch.Tensor  # (L,) cache slots written: this step's context rows, then its queries
    mask: torch.Tensor  # (L, S) bool over the first S cache slots


def decode_plan(
    group_sizes, num_slots: int, device: torch.device | str, span: int = KV_SPAN, prefill: int = 0
) -> tuple[PlannedStep, ...]:
    """The steps of :func:`decode_steps` (with ``prefill`` known tokens at step 1) ready to run on
    ``device``. A step's mask covers the first S cache slots, S = the step's last slot rounded up to a
    multiple of ``span`` (at most ``num_slots``), and is False beyond the step's block, so hidden slots
    get weight exactly 0. A step's shapes then depend on its row count and S only, never on where
    decoding stands (compilable, CUDA-graph friendly); ``span >= num_slots`` attends over every slot
    at every step. Built once per (schedule, size, span, device, prefill) and cached."""
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    if prefill < 0:
        raise ValueError(f"prefill must be >= 0, got {prefill}")
    return _decode_plan(
        tuple(int(g) for g in group_sizes), int(num_slots), int(span), torch.device(device), int(prefill)
    )


@lru_cache(maxsize=32)
def _decode_plan(
    group_sizes: tuple[int, ...], num_slots: int, span: int, device: torch.device, prefill: int
) -> tuple[PlannedStep, ...]:
    if num_slots < 1 + prefill + sum(group_sizes):
        raise ValueError(f"{num_slots} cache slots cannot hold the class token and {prefill + sum(group_sizes)} tokens")
    out = []
    with torch.inference_mode(False):  # cached: must also serve callers outside inference mode
        for s in decode_steps(group_sizes, prefill):
            width = min(num_slots, -(-s.slot_end // span) * span)
            mask = torch.zeros(s.mask.shape[0], width, dtype=torch.bool)
            mask[:, : s.slot_end] = s.mask
            slots = torch.arange(s.slot_start, s.slot_end, device=device)
            out.append(PlannedStep(s.q_start, s.q_end, slots, mask.to(device)))
    return tuple(out)
