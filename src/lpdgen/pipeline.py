"""Class labels in, images out: the LPD network, a generation order and a VQ tokenizer in one call.

Why a pipeline object: sampling for people (``lpdgen sample``), for evaluation (50k images with
per-image seeds) and for training previews all do the same glue - pick the schedule for a step count,
build one order per image, decode with guidance, turn codes into pixels - and it belongs in one place.
Shaped like a diffusers pipeline: keyword arguments, ``torch.Generator`` or per-image seeds, an output
dataclass, ``output_type``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .generation import eval_mode
from .model import LPD
from .orders import ORDER_TYPES, build_orders, group_sizes
from .tokenizer import float_to_uint8

OUTPUT_TYPES = ("pil", "np", "pt", "codes")


@dataclass
class PipelineOutput:
    """``images``: list of PIL images ("pil"), uint8 (B, H, W, C) array ("np"), float (B, C, H, W) in
    [-1, 1] ("pt"), or None ("codes"). ``codes`` (B, h, w) and ``orders`` (B, N) are always returned."""

    images: list | np.ndarray | torch.Tensor | None
    codes: torch.Tensor
    orders: torch.Tensor
    group_sizes: list[int]


class LPDPipeline:
    """Generate images with an :class:`~lpdgen.model.LPD` model and a tokenizer.

    Args:
        model: the LPD network, on the device you want (decoding runs it without dropout).
        tokenizer: anything with ``decode(codes (B, h, w)) -> (B, C, H, W)`` floats in [-1, 1]
            (e.g. :class:`lpdgen.VQTokenizer`); None allows ``output_type="codes"`` only.
        tau, rho: proximity and repulsion thresholds of the locality-aware order (published 1 and 2).
    """

    def __init__(self, model: LPD, tokenizer: torch.nn.Module | None = None, *, tau: float = 1.0, rho: float = 2.0):
        self.model = model
        self.tokenizer = tokenizer
        self.tau, self.rho = tau, rho

    @property
    def device(self) -> torch.device:
        return self.model.pos_embed.device

    @torch.inference_mode()
    def __call__(
        self,
        class_labels: Sequence[int] | torch.Tensor,
        *,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.0,
        cfg_schedule: str = "linear",
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        order: str = "locality",
        generator: torch.Generator | None = None,
        seeds: Sequence[int] | None = None,
        output_type: str = "pil",
    ) -> PipelineOutput:
        """Generate one image per class label.

        Randomness: ``seeds`` (one int per image) makes each image a function of its own seed only -
        the same whatever batch it is generated in (evaluation seeds images by index); otherwise one
        ``generator`` (or the default stream) drives orders and sampling of the whole batch.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output_type {output_type!r}; choose one of {OUTPUT_TYPES}")
        if order not in ORDER_TYPES:
            raise ValueError(f"unknown order {order!r}; choose one of {ORDER_TYPES}")
        if output_type != "codes" and self.tokenizer is None:
            raise ValueError("this pipeline has no tokenizer: use output_type='codes' or pass a tokenizer")
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1).to(self.device)
        b, cfg = labels.shape[0], self.model.cfg
        sizes = group_sizes(cfg.num_tokens, num_inference_steps)
        if seeds is not None:
            if len(seeds) != b or generator is not None:
                raise ValueError(f"pass either one seed per image ({b}) or a generator, got {len(seeds)} seeds")
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
            orders = torch.cat([self._orders(order, sizes, 1, g) for g in gens])
            sample_gen: torch.Generator | list[torch.Generator] | None = gens
        else:
            orders = self._orders(order, sizes, b, generator if generator is not None else _fresh_generator())
            sample_gen = generator
        codes = self.model.generate(labels, sizes, orders.to(self.device), cfg=guidance_scale, cfg_schedule=cfg_schedule,
                                    temperature=temperature, top_k=top_k, top_p=top_p, generator=sample_gen)
        codes = codes.view(b, *cfg.grid)  # (B, N) raster -> (B, h, w)
        return PipelineOutput(self._decode(codes, output_type), codes, orders, sizes)

    def _orders(self, kind: str, sizes: list[int], batch: int, generator: torch.Generator) -> torch.Tensor:
        return build_orders(kind, self.model.cfg.grid, sizes, batch=batch, seed=generator, tau=self.tau, rho=self.rho)

    def _decode(self, codes: torch.Tensor, output_type: str):
        if output_type == "codes":
            return None
        with eval_mode(self.tokenizer):
            images = self.tokenizer.decode(codes).float().clamp(-1, 1)  # (B, C, H, W)
        if output_type == "pt":
            return images
        arr = float_to_uint8(images)  # (B, H, W, C)
        if output_type == "np":
            return arr
        from PIL import Image

        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]


def _fresh_generator() -> torch.Generator:
    """A CPU generator seeded from torch's default stream (so ``torch.manual_seed`` still governs)."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
