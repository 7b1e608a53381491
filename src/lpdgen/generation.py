"""Parallel decoding with a KV cache: one forward pass per step.

The parts are separate functions: :func:`prepare` checks the inputs and embeds what every step needs
once, :func:`run_steps` is the step loop (shared by sampling and by teacher-forced scoring),
:func:`generate` samples and :func:`decode_logits` scores given tokens through exactly the same cached
path (used by tests to prove equivalence with the training forward). Each step comes planned by
:func:`lpdgen.masks.decode_plan` (its cache slots and mask as device tensors, cached per schedule);
a step attends over the cache in whole spans of the engine's ``kv_span`` slots, so its shapes depend
on its row count and span count alone, and nothing in the loop syncs with the host or re-checks its
arguments. Steps run through an :class:`lpdgen.engine.Engine` (reused KV cache, optionally compiled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .engine import Engine
from .masks import PlannedStep, decode_plan
from .model import LPD, KVCache
from .sampling import Generators, draw_uniform, guidance_scales, guide, sample_tokens
from .settings import check_values
from .utils import eval_mode


@dataclass
class DecodeState:
    """Everything the step loop reads, built once per call. B' is 2B when guidance doubles the batch."""

    steps: tuple[PlannedStep, ...]
    prefix: torch.Tensor  # (B', 1 + P, D) the first step's context: class token, then the P known tokens
    pos: torch.Tensor  # (B', N, D) position embeddings in generation order
    orders: torch.Tensor  # (B, N) the generation orders, on the model's device
    known: torch.Tensor | None  # (B, P) codes of the known cells in generation order (editing), else None
    cache: KVCache


def prepare(
    model: LPD,
    labels: torch.Tensor,
    group_sizes,
    orders: torch.Tensor,
    *,
    guided: bool,
    engine: Engine,
    num_known: int = 0,
    known_tokens: torch.Tensor | None = None,
) -> DecodeState:
    """Validate inputs and embed class tokens and positions once; with ``guided`` the batch is
    [conditional; null class]. The KV cache comes from ``engine`` (reused when it fits).

    Editing: the first ``num_known`` cells of each order are known, their codes read from
    ``known_tokens`` (B, N) in raster order; they join the class token as the first step's context
    (both halves of a guided batch see them), and ``group_sizes`` schedule the remaining cells."""
    if engine.model is not model:
        raise ValueError("engine belongs to another model")
    model.check_labels(labels)
    sizes = model.check_schedule(group_sizes, orders, labels.shape[0], num_known)
    device = model.pos_embed.device
    labels, orders = labels.to(device), orders.to(device)
    known = None
    if num_known:
        if known_tokens is None:
            raise ValueError("num_known > 0 needs known_tokens, the (B, N) codes of the known cells")
        model.check_tokens(known_tokens)
        known = torch.gather(known_tokens.to(device), 1, orders[:, :num_known])  # (B, P) in generation order
    null = None
    both_orders, both_labels, both_known = orders, labels, known
    if guided:
        null = torch.cat([torch.zeros_like(labels, dtype=torch.bool), torch.ones_like(labels, dtype=torch.bool)])
        both_labels, both_orders = torch.cat([labels, labels]), torch.cat([orders, orders])
        both_known = None if known is None else torch.cat([known, known])
    pos = model.position_embeddings(both_orders)  # (B', N, D)
    prefix = model.class_tokens(both_labels, null)  # (B', 1, D)
    if both_known is not None:
        prefix = torch.cat([prefix, model.embed_context(both_known, pos[:, :num_known])], dim=1)  # (B', 1 + P, D)
    return DecodeState(
        steps=decode_plan(sizes, model.cfg.num_tokens + 1, device, span=engine.kv_span, prefill=num_known),
        prefix=prefix,
        pos=pos,
        orders=orders,
        known=known,
        cache=engine.cache(both_labels.shape[0], device),
    )


def run_steps(
    model: LPD, state: DecodeState, choose: Callable[[PlannedStep, torch.Tensor], torch.Tensor], engine: Engine
) -> None:
    """The decoding loop. ``choose(step, logits)`` receives the logits (B', g_k, V) of a step and returns
    the codes (B', g_k) in generation order that become context at the next step. ``logits`` may be
    overwritten by the next step (CUDA graphs): ``choose`` copies what it keeps."""
    context = state.prefix
    for k, step in enumerate(state.steps):
        queries_pos = state.pos[:, step.q_start : step.q_end]
        logits = engine.step(context, queries_pos, state.cache, step)
        codes = choose(step, logits)
        if k + 1 < len(state.steps):  # the last group is never fed back
            context = model.embed_context(codes, queries_pos)


@torch.inference_mode()
def generate(
    model: LPD,
    labels: torch.Tensor,
    group_sizes,
    orders: torch.Tensor,
    *,
    guidance_scale: float = 1.0,
    guidance_schedule: str = "linear",
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: Generators = None,
    engine: Engine | None = None,
    num_known: int = 0,
    known_tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample images as token grids, one forward pass per group.

    Args:
        labels: (B,) class ids.
        group_sizes: tokens per step, summing to N - ``num_known`` (e.g. ``lpdgen.orders.group_sizes(256, 20)``).
        orders: (B, N) generation orders, each row a permutation of raster indices.
        guidance_scale: classifier-free guidance s (1.0 = no guidance: the null-class half is not run at all).
        guidance_schedule: "linear" (s_t = 1 + (s - 1) t / N for the t-th generated token) or "constant".
        temperature, top_k, top_p: sampling controls; ``top_k=1`` is greedy.
            All five are checked once here (:func:`lpdgen.settings.check_values`), not at every step.
        generator: a ``torch.Generator``, or one per sample so that each image depends only on its own
            seed (not on the batch it is generated in), or None for the default stream.
        engine: the :class:`~lpdgen.engine.Engine` of this model that runs the steps (its KV cache is
            reused across calls; ``Engine(model, compile=True)`` compiles them). None: a fresh eager one.
        num_known, known_tokens: editing (inpainting, outpainting). The first ``num_known`` cells of
            each order are known: their codes are read from ``known_tokens`` (B, N, raster order),
            written into the KV cache after the class token in the first forward pass (which also
            predicts the first group), and returned unchanged; only the other cells are generated,
            in ``len(group_sizes)`` steps. Guidance scales s_t count the known cells as generated first.

    Returns:
        (B, N) codes in raster order, on the model's device.
    """
    if isinstance(group_sizes, str):
        raise ValueError(
            f"generate() decodes a fixed schedule of group sizes, got {group_sizes!r}; adaptive steps: "
            "lpdgen.adaptive.generate_adaptive or pipe(..., num_inference_steps='auto')"
        )
    check_values(
        dict(
            guidance_scale=guidance_scale,
            guidance_schedule=guidance_schedule,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
        )
    )
    return _generate(
        model,
        labels,
        group_sizes,
        orders,
        guided=guidance_scale != 1.0,
        guidance_scale=guidance_scale,
        guidance_schedule=guidance_schedule,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
        engine=engine if engine is not None else Engine(model),
        num_known=num_known,
        known_tokens=known_tokens,
    )


def _generate(
    model: LPD,
    labels: torch.Tensor,
    group_sizes,
    orders: torch.Tensor,
    *,
    guided: bool,
    guidance_scale: float,
    guidance_schedule: str,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: Generators,
    engine: Engine,
    num_known: int = 0,
    known_tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`generate` with checked settings and an engine; ``guided`` apart from the scale so that a
    test can run scale 1 through the doubled batch (it must equal the plain batch bit for bit)."""
    state = prepare(
        model, labels, group_sizes, orders, guided=guided, engine=engine, num_known=num_known, known_tokens=known_tokens
    )
    b, n = labels.shape[0], model.cfg.num_tokens
    device = state.pos.device
    out = torch.empty(b, n, dtype=torch.long, device=device)  # codes in generation order
    if num_known:
        out[:, :num_known] = state.known
    scales = guidance_scales(torch.arange(n, device=device), n, guidance_scale, guidance_schedule)  # s_t per position

    def choose(step: PlannedStep, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if guided:
            cond, uncond = logits.chunk(2)
            logits = guide(cond, uncond, scales[step.q_start : step.q_end])
        uniform = draw_uniform((b, step.q_end - step.q_start), generator, device)
        codes = sample_tokens(logits, uniform, temperature, top_k, top_p)  # (B, g)
        out[:, step.q_start : step.q_end] = codes
        return torch.cat([codes, codes]) if guided else codes

    with eval_mode(model):
        run_steps(model, state, choose, engine)
    return torch.empty_like(out).scatter_(1, state.orders, out)  # back to raster order


@torch.inference_mode()
def decode_logits(
    model: LPD,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    group_sizes,
    orders: torch.Tensor,
    *,
    engine: Engine | None = None,
    num_known: int = 0,
) -> torch.Tensor:
    """Teacher-forced logits (B, N - num_known, V) through the cached decoding path: row j is the query
    logit for raster position ``orders[:, num_known + j]`` when the true tokens are fed back as context.
    Equals :meth:`LPD.forward_logits` in eval mode (the contract tested in ``tests/test_generation.py``);
    with ``num_known`` known cells prefilled in the first pass, equals the training forward on the
    schedule ``[num_known, *group_sizes]`` past its first group (``tests/test_editing.py``)."""
    model.check_tokens(tokens)
    engine = engine if engine is not None else Engine(model)
    state = prepare(
        model, labels, group_sizes, orders, guided=False, engine=engine, num_known=num_known, known_tokens=tokens
    )
    ordered = torch.gather(tokens.to(state.pos.device), 1, state.orders)  # (B, N)
    rows: list[torch.Tensor] = []

    def choose(step: PlannedStep, logits: torch.Tensor) -> torch.Tensor:
        rows.append(logits.clone())  # kept past the next step
        return ordered[:, step.q_start : step.q_end]

    with eval_mode(model):
        run_steps(model, state, choose, engine)
    return torch.cat(rows, dim=1)
