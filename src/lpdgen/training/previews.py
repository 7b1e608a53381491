"""Sample grids during training: which tokenizer decodes them, and the grid itself (image i seeded by
``(seed, i)``, the same picture ``lpdgen sample --seed`` draws from the finished model)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..embedded import SHIPPED_TOKENIZERS, tokenizer_weights
from ..images import code_maps, image_grid
from ..io import PathLike
from ..model import LPD
from ..pipeline import LPDPipeline
from ..rng import image_seeds
from ..tokenizer import VQTokenizer


class TokenSpace(Protocol):
    """What a tokenizer must fit: a model's vocabulary and token grid (e.g. an ``LPDConfig``)."""

    vocab_size: int
    grid: tuple[int, int]


def load_sample_tokenizer(path: PathLike | None, model_cfg: TokenSpace) -> VQTokenizer | None:
    """The tokenizer that decodes training sample grids: ``path`` when given, else a shipped
    Fashion-MNIST one that fits the model (codebook = vocabulary, code grid = token grid),
    else None (grids then show code maps)."""
    if path is not None:
        return VQTokenizer.from_checkpoint(path)
    for name in dict.fromkeys(SHIPPED_TOKENIZERS):
        weights = tokenizer_weights(name)
        if not weights.is_file():
            continue
        tok = VQTokenizer.from_checkpoint(weights)
        if tok.config.codebook_size == model_cfg.vocab_size and tuple(tok.config.grid) == tuple(model_cfg.grid):
            return tok
    return None


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
