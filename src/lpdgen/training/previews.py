"""Sample grids during training: which tokenizer decodes them, and the grid itself (image i seeded by
``(seed, i)``, the same picture ``lpdgen sample --seed`` draws from the finished model)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..images import code_maps, image_grid
from ..io import PathLike
from ..model import LPD
from ..pipeline import LPDPipeline
from ..rng import image_seeds
from ..tokenizer import VQConfig, shipped_tokenizer_for, tokenizer_source


class TokenSpace(Protocol):
    """What a tokenizer must fit: a model's vocabulary and token grid (e.g. an ``LPDConfig``)."""

    vocab_size: int
    grid: tuple[int, int]


def resolve_tokenizer(spec: PathLike | None, model_cfg: TokenSpace, dataset: object = None) -> str | None:
    """The tokenizer a run records with its weights (so that ``lpdgen sample`` decodes the run's tokens
    with it) and decodes its sample grids with, as a shipped name or an absolute path: ``spec`` when
    given; else the one ``lpdgen cache`` recorded in the dataset's index; else a shipped tokenizer that
    fits (the cache's tokenizer config when the index has it, else the model's vocabulary and grid);
    else None (grids then show code maps)."""
    if spec is not None:
        return tokenizer_source(spec)
    index = getattr(dataset, "index", None) or {}
    if index.get("tokenizer_source"):
        return index["tokenizer_source"]
    cache_config = VQConfig.from_dict(index["tokenizer"]) if isinstance(index.get("tokenizer"), dict) else None
    return shipped_tokenizer_for(model_cfg.vocab_size, model_cfg.grid, cache_config)


def sample_grid(model: LPD, *, count: int, steps: int, guidance_scale: float, seed: int, tokenizer=None) -> np.ndarray:
    """A mosaic of ``count`` samples (labels cycling over the classes) decoded in ``steps`` steps with
    locality-aware orders, image i seeded by ``(seed, i)``; decoding leaves the training mode as it was."""
    c = model.cfg
    out = LPDPipeline(model, tokenizer)(
        torch.arange(count) % c.num_classes,
        num_inference_steps=min(steps, c.num_tokens),
        guidance_scale=guidance_scale,
        seeds=image_seeds(seed, range(count)),
        output_type="np" if tokenizer is not None else "codes",
    )
    images = out.images if tokenizer is not None else code_maps(out.codes, c.vocab_size)
    return image_grid(images)
