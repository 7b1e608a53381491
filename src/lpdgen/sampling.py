"""Pure functions that turn logits into tokens: classifier-free guidance, temperature, top-k, top-p.

Why explicit uniforms instead of ``torch.multinomial``: sampling here is inverse-CDF sampling from
uniforms drawn by the caller, so the randomness of a sample can come from one generator per image.
That makes a sample independent of the batch it was generated in (evaluation seeds images by index)
and of the device (uniforms are drawn on the generator's device and moved).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

GUIDANCE_SCHEDULES = ("linear", "constant")

Generators = torch.Generator | Sequence[torch.Generator] | None


def guidance_scales(
    positions: torch.Tensor, num_tokens: int, guidance_scale: float, schedule: str = "linear"
) -> torch.Tensor:
    """Guidance scale s_t of the token that is ``positions``-th (0-based) in generation order.

    "linear" (the published default): s_t = 1 + (s - 1) * t / N, weak guidance early, full late;
    "constant": s_t = s.
    """
    if schedule == "linear":
        return 1.0 + (guidance_scale - 1.0) * positions.to(torch.float32) / num_tokens
    if schedule == "constant":
        return torch.full(positions.shape, float(guidance_scale), dtype=torch.float32, device=positions.device)
    raise ValueError(f"unknown guidance_schedule {schedule!r}; choose one of {GUIDANCE_SCHEDULES}")


def guide(cond: torch.Tensor, uncond: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance u + s (c - u), written as c + (s - 1)(c - u) so that s = 1 returns the
    conditional logits bit-exactly. ``scales`` broadcasts against the token axis: (..., g) vs (..., g, V)."""
    return cond + (scales[..., None] - 1.0) * (cond - uncond)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to -inf (0 / 1.0 disable them).
    At least the most likely token always survives. Runs at every decoding step, so it trusts its
    arguments: :class:`lpdgen.settings.SamplingConfig` checked them once per call."""
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of strictly more likely tokens
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, sorted_idx, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw_uniform(shape: tuple[int, ...], generator: Generators, device: torch.device) -> torch.Tensor:
    """Uniforms in [0, 1) of ``shape`` (B, ...). With a sequence of B generators, row b comes from
    generator b alone. Drawn on the generator's device, returned on ``device``."""
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.rand(shape, generator=generator, device=gen_device).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
    rows = [torch.rand(shape[1:], generator=g, device=g.device).to(device) for g in generator]
    return torch.stack(rows)


def sample_tokens(
    logits: torch.Tensor,
    uniform: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """Sample one token per row of ``logits`` (..., V) by inverse CDF with ``uniform`` (...) in [0, 1).

    ``top_k == 1`` or ``temperature == 0`` is greedy (argmax, no randomness used). Arguments are
    trusted, as in :func:`filter_logits`.
    """
    if top_k == 1 or temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)  # (..., V)
    # 1 - u lies in (0, 1], so the chosen index always has positive probability.
    target = (1.0 - uniform.to(cdf.dtype))[..., None] * cdf[..., -1:]
    idx = torch.searchsorted(cdf, target).squeeze(-1)
    return idx.clamp_(max=logits.shape[-1] - 1)
