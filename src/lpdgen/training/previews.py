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
from ..tokenizer import FMNIST_WEIGHTS, VQTokenizer


class TokenSpace(Protocol):
    """What a tokenizer must fit: a model's vocabulary and token grid (e.g. an ``LPDConfig``)."""

    vocab_size: int
    grid: tuple[int, int]


def load_sample_tokenizer(path: PathLike | None, model_cfg: TokenSpace) -> VQTokenizer | None:
    """The tokenizer that decodes training sample grids: ``path`` when given, else the shipped
    Fashion-MNIST one when it exists and fits the model (codebook = vocabulary, code grid = token grid),
    else None (grids then show code maps)."""
    if path is not None:
        return VQTokenizer.from_checkpoint(path)
    if not FMNIST_WEIGHTS.is_file():
        return None
    tok = VQTokenizer.from_pretrained_fmnist()
    fits = tok.config.codebook_size == model_cfg.vocab_size and tuple(tok.config.grid) == tuple(model_cfg.grid)
    return tok if fits else None


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
