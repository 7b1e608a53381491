"""What changes over a run by plan, not by chance: the learning rate (warm-up, then cosine decay), the
parameter groups it applies to, and the group-size schedules a run draws from."""

from __future__ import annotations

import json
import math
from pathlib import Path

from torch import nn

from ..orders import all_group_sizes, group_sizes, validate_group_sizes


def learning_rate(t: float, *, peak: float, min_lr: float, warmup: float, decay_start: float, end: float) -> float:
    """Linear warm-up from 0 to ``peak`` over [0, warmup), constant until ``decay_start``, then half a
    cosine down to ``min_lr`` at ``end`` (and ``min_lr`` after). ``t`` is in epochs or steps - any unit,
    fractional values allowed, as long as all arguments share it."""
    if t < warmup:
        return peak * t / warmup
    if t < decay_start or end <= decay_start:
        return peak
    progress = min(1.0, (t - decay_start) / (end - decay_start))
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on >= 2-D weights (linears, embeddings, positions), none on biases and 1-D
    parameters (LayerNorm gains) - decaying those only pulls normalisation towards zero."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def resolve_schedules(spec: str, num_tokens: int) -> list[list[int]]:
    """Training schedules from ``spec``: "auto" (every schedule of the resolution), step counts such as
    "8,16,32", or a JSON file holding a list of group-size lists. Each must fit the token grid."""
    if spec == "auto":
        return all_group_sizes(num_tokens)
    path = Path(spec)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"schedule file not found: {path}")
        lists = json.loads(path.read_text())
        if not isinstance(lists, list) or not lists:
            raise ValueError(f"{path}: expected a non-empty JSON list of group-size lists")
        try:
            return [validate_group_sizes(s, num_tokens) for s in lists]
        except ValueError as e:
            raise ValueError(f"{path}: schedule does not match the {num_tokens}-token grid: {e}") from None
    try:
        counts = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(
            f"schedules must be 'auto', comma-separated step counts or a .json file, got {spec!r}"
        ) from None
    if not counts:
        raise ValueError("schedules is empty")
    bad = [c for c in counts if not 1 <= c <= num_tokens]
    if bad:
        raise ValueError(f"step counts {bad} do not fit the token grid of {num_tokens} tokens (need 1..{num_tokens})")
    return [group_sizes(num_tokens, c) for c in counts]
