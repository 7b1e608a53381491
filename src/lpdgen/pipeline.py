"""Class labels in, images out: the LPD network, a generation order and a VQ tokenizer in one call.

Why a pipeline object: sampling for people (``lpdgen sample``), for evaluation (50k images with
per-image seeds) and for training previews all do the same glue - pick the schedule for a step count,
build one order per image, decode with guidance, turn codes into pixels - and it belongs in one place.
Shaped like a diffusers pipeline: ``from_pretrained`` / ``save_pretrained``, keyword arguments,
``torch.Generator`` or per-image seeds, an output dataclass, ``output_type``. Where the parts come from
(folders, the embedded model, the Hub, published checkpoints): :mod:`lpdgen.pretrained`; what the
sampling settings are: :class:`lpdgen.settings.SamplingConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import rng
from .adaptive import generate_adaptive
from .classes import class_ids, default_class_names
from .editing import box_mask, cell_mask, check_keeps_a_cell, image_array
from .engine import Engine
from .generation import generate
from .images import float_to_uint8
from .io import PathLike
from .model import LPD, LPDConfig
from .orders import build_orders, group_sizes
from .pretrained import Parts, load_parts, save_parts
from .settings import AUTO_STEPS, DEFAULT_STEPS, SamplingConfig, check_combination
from .utils import eval_mode, plural

OUTPUT_TYPES = ("pil", "np", "pt", "codes")
Labels = Sequence[int | str] | torch.Tensor | int | str


@dataclass
class PipelineOutput:
    """``images``: list of PIL images ("pil"), uint8 (B, H, W, C) array ("np"), float (B, C, H, W) in
    [-1, 1] ("pt"), or None ("codes"). ``codes`` (B, h, w), ``orders`` (B, N) (raster index generated
    j-th), ``group_sizes`` (tokens per step) and ``labels`` (class ids) are always returned.

    Edits (:meth:`LPDPipeline.inpaint`) also return ``known`` (B, h, w), the token cells kept; each
    order lists them first, and ``group_sizes`` schedule the other cells (one list per image when
    the images of a batch regenerate different numbers of cells). ``num_steps``: the forward passes
    of each image; with ``num_inference_steps="auto"`` they differ, and ``group_sizes`` is the realised
    schedule of each image (a list per image)."""

    images: list | np.ndarray | torch.Tensor | None
    codes: torch.Tensor
    orders: torch.Tensor
    group_sizes: list[int] | list[list[int]]
    labels: list[int]
    known: torch.Tensor | None = None
    num_steps: list[int] | None = None  # forward passes per image (they differ with num_inference_steps="auto")

    def schedule(self, i: int) -> list[int]:
        """Image ``i``'s group sizes, whether the output holds one schedule for the batch (fixed steps) or
        one per image (adaptive steps; edits regenerating different numbers of cells)."""
        sizes = self.group_sizes
        return list(sizes[i]) if sizes and isinstance(sizes[0], list) else list(sizes)


def _draw_settings(sampling: SamplingConfig) -> dict[str, Any]:
    """The settings that turn logits into tokens, as fixed and adaptive decoding both take them."""
    keys = ("guidance_scale", "guidance_schedule", "temperature", "top_k", "top_p")
    return {k: getattr(sampling, k) for k in keys}


class LPDPipeline:
    """Generate images with an :class:`~lpdgen.model.LPD` model and a tokenizer.

    Args:
        model: the LPD network, on the device you want (decoding runs it without dropout).
        tokenizer: anything with ``decode(codes (B, h, w)) -> (B, C, H, W)`` floats in [-1, 1]
            (e.g. :class:`lpdgen.VQTokenizer`); None allows ``output_type="codes"`` only.
        sampling: the defaults of every call (steps, guidance, order, ...); :class:`SamplingConfig`'s
            own defaults when None (at most one step per token).
        class_names: one name per class (labels may then be names); ImageNet's for 1,000-class models.
        compile: compile the per-step decoding function of the pipeline's engine
            (:class:`lpdgen.engine.Engine`; CUDA graphs on GPUs).
    """

    def __init__(
        self,
        model: LPD,
        tokenizer: torch.nn.Module | None = None,
        *,
        sampling: SamplingConfig | None = None,
        class_names: Sequence[str] | None = None,
        compile: bool = False,
    ):
        self.model = model
        self.compile = compile
        self._engine: Engine | None = None
        self.tokenizer = tokenizer
        n = model.cfg.num_tokens
        self.sampling = (sampling or SamplingConfig(num_inference_steps=min(DEFAULT_STEPS, n))).validate(n)
        names = tuple(class_names) if class_names is not None else default_class_names(model.cfg.num_classes)
        if names is not None and len(names) != model.cfg.num_classes:
            raise ValueError(f"got {len(names)} class names for a model of {model.cfg.num_classes} classes")
        self.class_names = names

    @property
    def device(self) -> torch.device:
        return self.model.pos_embed.device

    @property
    def engine(self) -> Engine:
        """The decoding engine (KV cache kept between calls, steps compiled when :attr:`compile`), made
        on first use and again after :meth:`to` or a new :attr:`model`."""
        if self._engine is None or self._engine.model is not self.model or self._engine.compile != self.compile:
            self._engine = Engine(self.model, compile=self.compile)
        return self._engine

    def class_ids(self, labels: Labels) -> list[int]:
        """Labels (ids or names) as class ids of this model; an unknown name suggests close ones."""
        return class_ids(labels, self.model.cfg.num_classes, self.class_names)

    def settings(self, **overrides: Any) -> SamplingConfig:
        """The model's sampling defaults (:attr:`sampling`) with every override that is not None put in,
        validated, steps included against this model's token count. Keys: :class:`SamplingConfig` fields.

        Also refused, since the combination would not do what it says: an entropy bound set for a fixed
        step count (it would be ignored; the model's own value passes, as callers forward whole resolved
        configs) and adaptive steps with another order than the locality-aware rule they draw cells from."""
        sampling = self.sampling.override(self.model.cfg.num_tokens, **overrides)
        check_combination(sampling, overrides, self.sampling.entropy_bound)
        return sampling

    @torch.inference_mode()
    def __call__(
        self,
        class_labels: Labels,
        *,
        generator: torch.Generator | None = None,
        seeds: Sequence[int] | None = None,
        output_type: str = "pil",
        **settings: Any,
    ) -> PipelineOutput:
        """Generate one image per class label (an id or a name such as ``"sneaker"``).

        ``settings``: any :class:`SamplingConfig` field (``num_inference_steps``, ``guidance_scale``,
        ``guidance_schedule``, ``order``, ``temperature``, ``top_k``, ``top_p``, ``tau``, ``rho``,
        ``entropy_bound``); one left out or None takes the model's own default (:attr:`sampling`).
        ``num_inference_steps="auto"``: adaptive steps (:mod:`lpdgen.adaptive`), each image takes as many
        as its model's certainty allows under ``entropy_bound``; ``out.num_steps`` says how many.
        Randomness: ``seeds`` (one int per image) makes each image a function of its own seed only -
        the same whatever batch it is generated in (see :mod:`lpdgen.rng`); otherwise one ``generator``
        (or torch's default stream) drives orders and sampling of the whole batch.
        """
        sampling = self.settings(**settings)
        self._check_output_type(output_type)
        ids = self.class_ids(class_labels)
        labels = torch.tensor(ids, dtype=torch.long, device=self.device)
        b = labels.shape[0]
        if seeds is not None and (len(seeds) != b or generator is not None):
            raise ValueError(f"pass either one seed per image ({b}) or a generator, got {len(seeds)} seeds")
        if sampling.num_inference_steps == AUTO_STEPS:
            gens = [rng.generator(seed) for seed in seeds] if seeds is not None else generator
            return self._adaptive(sampling, labels, ids, gens, output_type)
        sizes = group_sizes(self.model.cfg.num_tokens, sampling.num_inference_steps)
        if seeds is not None:
            gens = [rng.generator(seed) for seed in seeds]
            orders = self._orders(sampling, sizes, None, gens)  # row i: the batch-1 order of seed i
            sample_gen: torch.Generator | list[torch.Generator] | None = gens
        else:
            orders = self._orders(
                sampling, sizes, b, generator if generator is not None else rng.generator(rng.fresh_seed())
            )
            sample_gen = generator
        codes = self._generate(sampling, labels, sizes, orders, sample_gen, self.engine)
        codes = codes.view(b, *self.model.cfg.grid)  # (B, N) raster -> (B, h, w)
        return PipelineOutput(self.decode(codes, output_type), codes, orders, sizes, ids, num_steps=[len(sizes)] * b)

    def _adaptive(
        self, sampling: SamplingConfig, labels: torch.Tensor, ids: list[int], gens, output_type: str, **known
    ) -> PipelineOutput:
        """Adaptive steps (:mod:`lpdgen.adaptive`): the realised orders, schedules and step counts."""
        result = generate_adaptive(
            self.model,
            labels,
            entropy_bound=sampling.entropy_bound,
            tau=sampling.tau,
            rho=sampling.rho,
            **_draw_settings(sampling),
            generator=gens,
            **known,
        )
        codes = result.codes.view(labels.shape[0], *self.model.cfg.grid)
        mask = known.get("known")
        return PipelineOutput(
            self.decode(codes, output_type),
            codes,
            result.orders(),
            result.group_sizes(),
            ids,
            known=None if mask is None else mask.view_as(codes),
            num_steps=result.num_steps.tolist(),
        )

    def _orders(self, sampling: SamplingConfig, sizes: list[int], batch: int | None, gen, known=None) -> torch.Tensor:
        return build_orders(
            sampling.order,
            self.model.cfg.grid,
            sizes,
            batch=batch,
            seed=gen,
            tau=sampling.tau,
            rho=sampling.rho,
            known=known,
        )

    def _generate(
        self,
        sampling: SamplingConfig,
        labels: torch.Tensor,
        sizes: list[int],
        orders: torch.Tensor,
        generator,
        engine: Engine,
        **known,
    ) -> torch.Tensor:
        return generate(
            self.model,
            labels,
            sizes,
            orders,
            **_draw_settings(sampling),
            generator=generator,
            engine=engine,
            **known,
        )

    def _check_output_type(self, output_type: str) -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output_type {output_type!r}; choose one of {OUTPUT_TYPES}")
        if output_type != "codes" and self.tokenizer is None:
            raise ValueError("this pipeline has no tokenizer: use output_type='codes' or pass a tokenizer")

    # ------------------------------------------------------------------------------------------------
    # editing: known tokens prefilled, only the masked cells generated
    # ------------------------------------------------------------------------------------------------

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images this pipeline generates and edits (token grid x tokenizer downsampling)."""
        if self.tokenizer is None:
            raise ValueError("this pipeline has no tokenizer: it cannot read images")
        h, w = self.model.cfg.grid
        ds = self.tokenizer.config.downsample
        return h * ds, w * ds

    @torch.inference_mode()
    def encode(self, images) -> torch.Tensor:
        """Images (a list of PIL images or a uint8 array (B, H, W) / (B, H, W, C) at :attr:`image_size`)
        -> (B, h, w) codes on the model's device."""
        arr = image_array(images, self.image_size, self.tokenizer.config.image_channels)
        with eval_mode(self.tokenizer):
            return self.tokenizer.encode_uint8(arr).to(self.device)

    @torch.inference_mode()
    def inpaint(
        self,
        images,
        mask,
        class_labels: Labels,
        *,
        seeds: Sequence[int] | None = None,
        output_type: str = "pil",
        **settings: Any,
    ) -> PipelineOutput:
        """Regenerate the masked part of each image, keeping the rest token for token.

        The image is tokenized; the tokens of the kept cells are written into the KV cache after the
        class token in one forward pass, and only the masked cells are generated, in
        ``num_inference_steps`` steps whose group sizes follow the schedule rule for the masked count.
        The locality-aware order starts next to the kept cells and grows inward. Kept codes come back
        bit for bit; the decoded pixels near the mask may still change a little, since the tokenizer's
        decoder mixes neighbouring cells. Class-conditional editing is this with another label, e.g.
        ``pipe.inpaint(shirts, lower_half, "dress")`` (docs/editing.md).

        Args:
            images: a list of PIL images, or a uint8 array (B, H, W) / (B, H, W, C), at :attr:`image_size`.
            mask: bool, True = regenerate: (B, H, W) pixels (every token cell it touches is regenerated)
                or (B, h, w) token cells; a 2-D mask applies to every image.
            class_labels: one label (id or name) for every image, or one per image.
            seeds: one int per image (default: fresh ones); image i depends on seed i alone. A full mask
                gives exactly ``pipe(labels, seeds=seeds)``.
            output_type: "pil", "np", "pt" or "codes", as for :meth:`__call__`.
            settings: the sampling settings, as for :meth:`__call__`. ``num_inference_steps`` counts the
                steps for the masked cells: by default the model's, at most the masked count; given, it
                must not exceed the masked count. With guidance, the null-class half of the batch sees
                the same kept tokens.
        Returns:
            :class:`PipelineOutput` with ``codes`` (B, h, w), ``known`` (B, h, w) and the images.
        """
        steps_given = settings.get("num_inference_steps") is not None
        sampling = self.settings(**settings)
        self._check_output_type(output_type)
        codes = self.encode(images)  # (B, h, w)
        b, (h, w), n = codes.shape[0], self.model.cfg.grid, self.model.cfg.num_tokens
        regen = cell_mask(mask, b, (h, w), self.tokenizer.config.downsample).view(b, n)  # (B, N)
        ids = self.class_ids(class_labels)
        if len(ids) == 1:
            ids = ids * b
        if len(ids) != b:
            raise ValueError(f"got {len(ids)} class labels for {b} images; pass one label, or one per image")
        if seeds is None:
            seeds = [rng.fresh_seed() for _ in range(b)]
        if len(seeds) != b:
            raise ValueError(f"got {len(seeds)} seeds for {b} images; pass one per image")
        labels = torch.tensor(ids, dtype=torch.long, device=self.device)
        flat = codes.view(b, n)
        if sampling.num_inference_steps == AUTO_STEPS:  # one batch, however many cells each image regenerates
            if not bool(regen.any(dim=1).all()):
                raise ValueError("every image needs at least one token cell to regenerate")
            gens = [rng.generator(s) for s in seeds]
            return self._adaptive(sampling, labels, ids, gens, output_type, known=~regen, known_tokens=flat)
        out, orders = flat.clone(), torch.arange(n).repeat(b, 1)
        schedules: list[list[int]] = [[] for _ in range(b)]
        counts = regen.sum(dim=1).tolist()
        engine = self.engine
        for count in sorted(set(counts) - {0}):  # rows regenerating equally many cells share a schedule
            rows = [i for i, c in enumerate(counts) if c == count]
            steps = sampling.num_inference_steps if steps_given else min(sampling.num_inference_steps, count)
            if steps > count:
                raise ValueError(
                    f"{steps} steps for {plural(count, 'token cell')} to regenerate: use at most "
                    f"{plural(count, 'step')} (each step generates at least one cell)"
                )
            sizes = group_sizes(count, steps)
            gens = [rng.generator(seeds[i]) for i in rows]
            row_orders = self._orders(sampling, sizes, None, gens, known=~regen[rows])  # kept cells first
            on_device = torch.tensor(rows, device=self.device)
            out[on_device] = self._generate(
                sampling,
                labels[on_device],
                sizes,
                row_orders,
                gens,
                engine,
                num_known=n - count,
                known_tokens=flat[on_device],
            )
            orders[rows] = row_orders
            for i in rows:
                schedules[i] = sizes
        uniform = all(sz == schedules[0] for sz in schedules)
        steps_per_image = [len(sz) for sz in schedules]
        codes = out.view(b, h, w)
        return PipelineOutput(
            self.decode(codes, output_type),
            codes,
            orders,
            schedules[0] if uniform else schedules,
            ids,
            known=~regen.view(b, h, w),
            num_steps=steps_per_image,
        )

    def outpaint(
        self,
        images,
        keep_box,
        class_labels: Labels,
        *,
        seeds: Sequence[int] | None = None,
        output_type: str = "pil",
        **settings: Any,
    ) -> PipelineOutput:
        """Keep the token cells inside ``keep_box`` and generate everything around them.

        ``keep_box``: (x0, y0, x1, y1) in pixels (x1, y1 exclusive) for every image, or one box per
        image; a cell is kept only when the box covers all of it (a box that covers no whole cell keeps
        nothing and raises ``ValueError``). Other arguments and the result are those of :meth:`inpaint`."""
        b = len(images) if isinstance(images, (list, tuple)) else int(np.shape(images)[0])
        keep = box_mask(keep_box, b, self.image_size)
        check_keeps_a_cell(keep, self.tokenizer.config.downsample)
        return self.inpaint(images, ~keep, class_labels, seeds=seeds, output_type=output_type, **settings)

    def decode(self, codes: torch.Tensor, output_type: str = "np"):
        """Codes (B, h, w) -> images in ``output_type`` (None for "codes")."""
        if output_type == "codes":
            return None
        with eval_mode(self.tokenizer):
            images = self.tokenizer.decode(codes.to(self.tokenizer.device)).float().clamp(-1, 1)  # (B, C, H, W)
        if output_type == "pt":
            return images
        arr = float_to_uint8(images)  # (B, H, W, C)
        if output_type == "np":
            return arr
        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]

    # ------------------------------------------------------------------------------------------------
    # loading and saving (the files themselves: lpdgen.pretrained)
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: PathLike | None = None,
        *,
        checkpoint: PathLike | None = None,
        config: str | LPDConfig | None = None,
        tokenizer: PathLike | torch.nn.Module | None = None,
        image_size: int = 256,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        quantize: str | None = None,
        compile: bool = False,
    ) -> LPDPipeline:
        """Load a pipeline, in eval mode, on ``device``.

        - no argument: the default embedded Fashion-MNIST model (no network); ``"fmnist-64"`` or
          ``"fmnist-256"`` names one (8x8 or 16x16 tokens, :mod:`lpdgen.embedded`);
        - ``path``: a folder written by :meth:`save_pretrained`, or a Hugging Face repo id such as
          ``"mit-han-lab/lpd_l_256"`` (needs ``pip install huggingface_hub`` and a network);
        - ``path``: a training run of ``lpdgen train`` (its ``--out-dir``: the final ``lpd.safetensors``,
          else the newest ``ckpt_<step>.pt``), or one of its weights files; the config, tokenizer and
          sampling settings (its preview grids' steps and guidance) are the ones the run recorded
          (:mod:`lpdgen.runs`);
        - ``checkpoint=`` (+ ``config=`` for published files, which carry no config) and ``tokenizer=``:
          a published pair such as ``lpd_l_256.pth`` + ``vq_ds16_c2i.pt``, or lpdgen's own files
          (``config`` may also be an :class:`LPDConfig`, ``tokenizer`` a loaded tokenizer or ``"fmnist"``;
          without ``tokenizer=``, lpdgen's own files decode with the tokenizer they recorded).

        ``dtype``: weights dtype (default float32; the embedded model is stored in float16).
        ``quantize``: "int8" (CPU) or "int8-weight" / "int4-weight" (GPU, torchao): :meth:`LPD.quantize`.
        ``compile``: compile the decoding step (:class:`lpdgen.engine.Engine`).
        """
        parts = load_parts(path, checkpoint=checkpoint, config=config, tokenizer=tokenizer, image_size=image_size)
        pipe = cls(
            parts.model, parts.tokenizer, sampling=parts.sampling, class_names=parts.class_names, compile=compile
        )
        pipe.to(device, dtype)
        if quantize is not None:
            pipe.model.quantize(quantize)
        return pipe

    def to(self, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> LPDPipeline:
        """Move the model (and tokenizer) to ``device``; weights in ``dtype`` (float32 when None). Eval mode."""
        self.model.to(device=device, dtype=dtype or torch.float32).eval()
        self._engine = None  # its cache and compiled step belong to the old device
        if self.tokenizer is not None:
            self.tokenizer.to(device=device, dtype=torch.float32).eval()
        return self

    def save_pretrained(
        self, folder: PathLike, *, dtype: torch.dtype = torch.float32, tokenizer_name: str | None = None
    ) -> Path:
        """Write the pipeline as a folder that :meth:`from_pretrained` reads (weights in ``dtype``).
        ``tokenizer_name``: name a shipped tokenizer (``"fmnist"``, ``"fmnist-256"``) instead of writing its weights."""
        parts = Parts(self.model, self.tokenizer, self.sampling, self.class_names)
        return save_parts(folder, parts, dtype=dtype, tokenizer_name=tokenizer_name)
