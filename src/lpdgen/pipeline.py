"""Class labels in, images out: the LPD network, a generation order and a VQ tokenizer in one call.

Why a pipeline object: sampling for people (``lpdgen sample``), for evaluation (50k images with
per-image seeds) and for training previews all do the same glue - pick the schedule for a step count,
build one order per image, decode with guidance, turn codes into pixels - and it belongs in one place.
Shaped like a diffusers pipeline: ``from_pretrained`` / ``save_pretrained``, keyword arguments,
``torch.Generator`` or per-image seeds, an output dataclass, ``output_type``.

A pretrained pipeline is a folder::

    model.safetensors  model.json        the LPD weights and LPDConfig (LPD.save)
    tokenizer.safetensors tokenizer.json the VQ tokenizer (VQTokenizer.save), or a shipped name in pipeline.json
    pipeline.json                        class names and the model's own sampling defaults

The embedded Fashion-MNIST model (``LPDPipeline.from_pretrained()``) is such a folder inside the package.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .classes import class_ids, default_class_names
from .editing import box_mask, cell_mask, image_array
from .embedded import DEFAULT_MODEL, EMBEDDED_MODELS, SHIPPED_TOKENIZERS, model_folder
from .engine import Engine
from .generation import generate
from .images import float_to_uint8
from .io import PathLike, atomic_write_json
from .model import LPD, LPDConfig
from .orders import ORDER_TYPES, PUBLISHED_RHO, PUBLISHED_TAU, build_orders, group_sizes
from . import rng
from .sampling import CFG_SCHEDULES
from .tokenizer import load_tokenizer
from .utils import eval_mode

OUTPUT_TYPES = ("pil", "np", "pt", "codes")
PIPELINE_FILE = "pipeline.json"
HF_TOKENIZER = ("FoundationVision/LlamaGen", "vq_ds16_c2i.pt")  # the paper's tokenizer on the Hugging Face Hub


def check_sampling(steps: int, guidance_scale: float, guidance_schedule: str, order: str, temperature: float,
                   top_k: int, top_p: float, num_tokens: int | None = None) -> None:
    """Reject sampling settings that make no sense, naming the setting (negative guidance, top-p 0 ...)."""
    if int(steps) != steps or steps < 1 or (num_tokens is not None and steps > num_tokens):
        limit = f" (this model has {num_tokens} tokens per image)" if num_tokens is not None else ""
        raise ValueError(f"steps must be an integer in [1, number of tokens]{limit}, got {steps!r}")
    if not guidance_scale >= 0:  # also catches NaN
        raise ValueError(f"guidance scale must be >= 0 (1.0 = no guidance), got {guidance_scale}")
    if guidance_schedule not in CFG_SCHEDULES:
        raise ValueError(f"unknown guidance_schedule {guidance_schedule!r}; choose one of {CFG_SCHEDULES}")
    if order not in ORDER_TYPES:
        raise ValueError(f"unknown order {order!r}; choose one of {ORDER_TYPES}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p}")


@dataclass
class SamplingConfig:
    """How a model samples unless told otherwise; stored with the model (``pipeline.json``) so that
    ``pipe(labels)`` and ``lpdgen sample`` use the settings its authors measured to work best."""

    num_inference_steps: int = 20  # forward passes (groups); 1 <= steps <= number of tokens
    guidance_scale: float = 1.0  # classifier-free guidance s (1.0: none)
    guidance_schedule: str = "linear"  # "linear": s_t ramps from 1 to s over the generation order
    order: str = "locality"  # locality | raster | random | halton
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    tau: float = PUBLISHED_TAU  # proximity threshold of the locality-aware order
    rho: float = PUBLISHED_RHO  # repulsion threshold of the locality-aware order

    def __post_init__(self) -> None:
        check_sampling(self.num_inference_steps, self.guidance_scale, self.guidance_schedule, self.order,
                       self.temperature, self.top_k, self.top_p)
        if self.tau < 0 or self.rho < 0:
            raise ValueError(f"tau and rho must be >= 0, got tau={self.tau}, rho={self.rho}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SamplingConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown sampling settings {sorted(set(d) - known)}; known: {sorted(known)}")
        return cls(**d)


# Published sampling settings of the released ImageNet models: (config, image size) -> settings.
PUBLISHED_SAMPLING: dict[tuple[str, int], SamplingConfig] = {
    ("lpd-l", 256): SamplingConfig(num_inference_steps=20, guidance_scale=4.8, rho=2.0),
    ("lpd-xl", 256): SamplingConfig(num_inference_steps=20, guidance_scale=4.9, rho=2.0),
    ("lpd-xxl", 256): SamplingConfig(num_inference_steps=20, guidance_scale=5.9, rho=3.0),
    ("lpd-l", 512): SamplingConfig(num_inference_steps=48, guidance_scale=7.3, rho=4.0),
    ("lpd-xl", 512): SamplingConfig(num_inference_steps=48, guidance_scale=6.0, rho=4.0),
}


@dataclass
class PipelineOutput:
    """``images``: list of PIL images ("pil"), uint8 (B, H, W, C) array ("np"), float (B, C, H, W) in
    [-1, 1] ("pt"), or None ("codes"). ``codes`` (B, h, w), ``orders`` (B, N) (raster index generated
    j-th), ``group_sizes`` (tokens per step) and ``labels`` (class ids) are always returned.

    Edits (:meth:`LPDPipeline.inpaint`) also return ``known`` (B, h, w), the token cells kept; each
    order lists them first, and ``group_sizes`` schedule the other cells (one list per image when
    the images of a batch regenerate different numbers of cells)."""

    images: list | np.ndarray | torch.Tensor | None
    codes: torch.Tensor
    orders: torch.Tensor
    group_sizes: list[int] | list[list[int]]
    labels: list[int]
    known: torch.Tensor | None = None


class LPDPipeline:
    """Generate images with an :class:`~lpdgen.model.LPD` model and a tokenizer.

    Args:
        model: the LPD network, on the device you want (decoding runs it without dropout).
        tokenizer: anything with ``decode(codes (B, h, w)) -> (B, C, H, W)`` floats in [-1, 1]
            (e.g. :class:`lpdgen.VQTokenizer`); None allows ``output_type="codes"`` only.
        sampling: the defaults of every call (steps, guidance, order, ...); :class:`SamplingConfig`'s
            own defaults when None.
        class_names: one name per class (labels may then be names); ImageNet's for 1,000-class models.
        compile: compile the per-step decoding function (:class:`lpdgen.engine.Engine`; CUDA graphs on GPUs).
    """

    def __init__(self, model: LPD, tokenizer: torch.nn.Module | None = None, *, sampling: SamplingConfig | None = None,
                 class_names: Sequence[str] | None = None, compile: bool = False):
        self.model = model
        self.compile = compile
        self._engine: Engine | None = None
        self.tokenizer = tokenizer
        self.sampling = sampling or SamplingConfig(num_inference_steps=min(20, model.cfg.num_tokens))
        if self.sampling.num_inference_steps > model.cfg.num_tokens:
            raise ValueError(f"default steps {self.sampling.num_inference_steps} exceed the model's {model.cfg.num_tokens} tokens")
        names = tuple(class_names) if class_names is not None else default_class_names(model.cfg.num_classes)
        if names is not None and len(names) != model.cfg.num_classes:
            raise ValueError(f"got {len(names)} class names for a model of {model.cfg.num_classes} classes")
        self.class_names = names

    @property
    def device(self) -> torch.device:
        return self.model.pos_embed.device

    @property
    def engine(self) -> Engine:
        """The decoding engine (KV cache kept between calls, optionally compiled steps), made on first use."""
        if self._engine is None or self._engine.model is not self.model:
            self._engine = Engine(self.model, compile=self.compile)
        return self._engine

    def class_ids(self, labels: Sequence[int | str] | torch.Tensor | int | str) -> list[int]:
        """Labels (ids or names) as class ids of this model; an unknown name suggests close ones."""
        return class_ids(labels, self.model.cfg.num_classes, self.class_names)

    @torch.inference_mode()
    def __call__(
        self,
        class_labels: Sequence[int | str] | torch.Tensor | int | str,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_schedule: str | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        order: str | None = None,
        tau: float | None = None,
        rho: float | None = None,
        generator: torch.Generator | None = None,
        seeds: Sequence[int] | None = None,
        output_type: str = "pil",
    ) -> PipelineOutput:
        """Generate one image per class label (an id or a name such as ``"sneaker"``).

        Every sampling argument (the fields of :class:`SamplingConfig`) left None takes the model's own
        default (:attr:`sampling`); ``tau``/``rho`` are the locality-aware order's thresholds.
        Randomness: ``seeds`` (one int per image) makes each image a function of its own seed only -
        the same whatever batch it is generated in (see :mod:`lpdgen.rng`); otherwise one ``generator``
        (or torch's default stream) drives orders and sampling of the whole batch.
        """
        s = self.settings(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                          guidance_schedule=guidance_schedule, temperature=temperature, top_k=top_k, top_p=top_p,
                          order=order, tau=tau, rho=rho)
        self._check_output_type(output_type)
        ids = self.class_ids(class_labels)
        labels = torch.tensor(ids, dtype=torch.long, device=self.device)
        b, grid = labels.shape[0], self.model.cfg.grid
        sizes = group_sizes(self.model.cfg.num_tokens, s.num_inference_steps)
        if seeds is not None:
            if len(seeds) != b or generator is not None:
                raise ValueError(f"pass either one seed per image ({b}) or a generator, got {len(seeds)} seeds")
            gens = [rng.generator(s) for s in seeds]
            orders = self._orders(s, sizes, None, gens)  # row i: the batch-1 order of seed i
            sample_gen: torch.Generator | list[torch.Generator] | None = gens
        else:
            orders = self._orders(s, sizes, b, generator if generator is not None else rng.generator(rng.fresh_seed()))
            sample_gen = generator
        codes = generate(self.model, labels, sizes, orders.to(self.device), cfg=s.guidance_scale,
                         cfg_schedule=s.guidance_schedule, temperature=s.temperature, top_k=s.top_k,
                         top_p=s.top_p, generator=sample_gen, engine=self.engine)
        codes = codes.view(b, *grid)  # (B, N) raster -> (B, h, w)
        return PipelineOutput(self.decode(codes, output_type), codes, orders, sizes, ids)

    def _orders(self, s: SamplingConfig, sizes: list[int], batch: int | None, gen, known=None) -> torch.Tensor:
        return build_orders(s.order, self.model.cfg.grid, sizes, batch=batch, seed=gen, tau=s.tau, rho=s.rho,
                            known=known)

    def settings(self, **overrides) -> SamplingConfig:
        """The model's sampling defaults (:attr:`sampling`) with every override that is not None put in,
        validated, steps included against this model's token count. Keys: :class:`SamplingConfig` fields."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(SamplingConfig)}
        if unknown:
            raise TypeError(f"unknown sampling settings {sorted(unknown)}")
        v = {**dataclasses.asdict(self.sampling), **{k: x for k, x in overrides.items() if x is not None}}
        check_sampling(v["num_inference_steps"], v["guidance_scale"], v["guidance_schedule"], v["order"],
                       v["temperature"], v["top_k"], v["top_p"], self.model.cfg.num_tokens)
        return SamplingConfig(**v)

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
        class_labels: Sequence[int | str] | torch.Tensor | int | str,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seeds: Sequence[int] | None = None,
        output_type: str = "pil",
        *,
        guidance_schedule: str | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        order: str | None = None,
        tau: float | None = None,
        rho: float | None = None,
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
            num_inference_steps: steps for the masked cells (default: the model's, at most the masked count).
            guidance_scale: classifier-free guidance (default: the model's); the null-class half of the
                batch sees the same kept tokens.
            seeds: one int per image (default: fresh ones); image i depends on seed i alone. A full mask
                gives exactly ``pipe(labels, seeds=seeds)``.
            output_type: "pil", "np", "pt" or "codes", as for :meth:`__call__`.
            guidance_schedule, temperature, top_k, top_p, order, tau, rho: as for :meth:`__call__`.
        Returns:
            :class:`PipelineOutput` with ``codes`` (B, h, w), ``known`` (B, h, w) and the images.
        """
        s = dataclasses.replace(  # the step count is checked per mask below, against the masked cells
            self.settings(guidance_scale=guidance_scale, guidance_schedule=guidance_schedule, temperature=temperature,
                          top_k=top_k, top_p=top_p, order=order, tau=tau, rho=rho),
            **({} if num_inference_steps is None else {"num_inference_steps": num_inference_steps}))
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
        out, orders = flat.clone(), torch.arange(n).repeat(b, 1)
        schedules: list[list[int]] = [[] for _ in range(b)]
        counts = regen.sum(dim=1)
        for count in sorted(set(counts.tolist()) - {0}):  # rows regenerating equally many cells share a schedule
            rows = (counts == count).nonzero().flatten()
            steps = min(s.num_inference_steps, count) if num_inference_steps is None else s.num_inference_steps
            if steps > count:
                raise ValueError(f"num_inference_steps {steps} exceeds the {count} token cells to regenerate")
            sizes = group_sizes(count, steps)
            gens = [rng.generator(seeds[i]) for i in rows.tolist()]
            row_orders = self._orders(s, sizes, None, gens, known=~regen[rows])  # kept cells first
            on_device = rows.to(self.device)
            out[on_device] = generate(
                self.model, labels[on_device], sizes, row_orders.to(self.device), cfg=s.guidance_scale,
                cfg_schedule=s.guidance_schedule, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, generator=gens,
                num_known=n - count, known_tokens=flat[on_device], engine=self.engine)
            orders[rows] = row_orders
            for i in rows.tolist():
                schedules[i] = sizes
        uniform = all(sz == schedules[0] for sz in schedules)
        codes = out.view(b, h, w)
        return PipelineOutput(self.decode(codes, output_type), codes, orders, schedules[0] if uniform else schedules,
                              ids, known=~regen.view(b, h, w))

    def outpaint(self, images, keep_box, class_labels: Sequence[int | str] | torch.Tensor | int | str,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 seeds: Sequence[int] | None = None, output_type: str = "pil", **kwargs) -> PipelineOutput:
        """Keep the token cells inside ``keep_box`` and generate everything around them.

        ``keep_box``: (x0, y0, x1, y1) in pixels (x1, y1 exclusive) for every image, or one box per
        image; a cell is kept only when the box covers all of it. Other arguments and the result are
        those of :meth:`inpaint`."""
        b = len(images) if isinstance(images, (list, tuple)) else int(np.shape(images)[0])
        keep = box_mask(keep_box, b, self.image_size)
        return self.inpaint(images, ~keep, class_labels, num_inference_steps, guidance_scale, seeds, output_type,
                            **kwargs)

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
        from PIL import Image

        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]

    # ------------------------------------------------------------------------------------------------
    # loading and saving
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
        - ``checkpoint=`` (+ ``config=`` for published files, which carry no config) and ``tokenizer=``:
          a published pair such as ``lpd_l_256.pth`` + ``vq_ds16_c2i.pt``, or lpdgen's own files
          (``config`` may also be an :class:`LPDConfig`, ``tokenizer`` a loaded tokenizer or ``"fmnist"``).

        ``dtype``: weights dtype (default float32; the embedded model is stored in float16).
        ``quantize``: "int8" (CPU) or "int8-weight" / "int4-weight" (GPU, torchao): :meth:`LPD.quantize`.
        ``compile``: compile the decoding step (:class:`lpdgen.engine.Engine`).
        """
        if path is not None and checkpoint is not None:
            raise ValueError("pass either a pretrained folder / repo id or checkpoint=, not both")
        if checkpoint is not None:
            pipe = cls._from_files(checkpoint, config, tokenizer, image_size)
        elif path is None or str(path) in EMBEDDED_MODELS:
            pipe = cls._from_folder(model_folder(DEFAULT_MODEL if path is None else str(path)))
        elif Path(path).is_dir():
            pipe = cls._from_folder(Path(path))
        elif Path(path).exists():
            raise ValueError(f"{path} is a file: pass a pretrained folder, or the file as checkpoint=")
        elif _looks_like_repo_id(str(path)):
            pipe = cls._from_hub(str(path), tokenizer)
        else:
            raise FileNotFoundError(f"pretrained folder not found: {path} (embedded models: "
                                    f"{', '.join(EMBEDDED_MODELS)})")
        pipe.to(device, dtype)
        if quantize is not None:
            pipe.model.quantize(quantize)
        pipe.compile = compile
        return pipe

    def to(self, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> LPDPipeline:
        """Move the model (and tokenizer) to ``device``; weights in ``dtype`` (float32 when None). Eval mode."""
        self.model.to(device=device, dtype=dtype or torch.float32).eval()
        self._engine = None  # its cache and compiled step belong to the old device
        if self.tokenizer is not None:
            self.tokenizer.to(device=device, dtype=torch.float32).eval()
        return self

    @classmethod
    def _from_folder(cls, folder: Path) -> LPDPipeline:
        meta_path = folder / PIPELINE_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} has no {PIPELINE_FILE}: not a folder written by LPDPipeline.save_pretrained")
        try:
            meta = json.loads(meta_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{meta_path} is not valid JSON: {e}") from None
        if not isinstance(meta, dict) or "model" not in meta or "tokenizer" not in meta:
            raise ValueError(f"{meta_path} must name the 'model' and 'tokenizer' files")
        model = LPD.from_checkpoint(folder / meta["model"])
        tok_spec = meta["tokenizer"]
        tokenizer = None if tok_spec is None else load_tokenizer(tok_spec if tok_spec in SHIPPED_TOKENIZERS else str(folder / tok_spec))
        if tokenizer is not None:
            check_compatible(model, tokenizer)
        return cls(model, tokenizer, sampling=SamplingConfig.from_dict(meta.get("sampling", {})),
                   class_names=meta.get("class_names"))

    @classmethod
    def _from_files(cls, checkpoint: PathLike, config: str | LPDConfig | None, tokenizer, image_size: int) -> LPDPipeline:
        model = LPD.from_checkpoint(checkpoint, config=config, image_size=image_size)
        tok = load_tokenizer(str(tokenizer)) if isinstance(tokenizer, (str, Path)) else tokenizer
        if tok is not None:
            check_compatible(model, tok)
        published = PUBLISHED_SAMPLING.get((config, image_size)) if isinstance(config, str) else None
        return cls(model, tok, sampling=published)

    @classmethod
    def _from_hub(cls, repo_id: str, tokenizer: PathLike | None) -> LPDPipeline:
        try:
            import huggingface_hub
        except ImportError:
            raise ValueError(f"{repo_id!r} is not a local folder; to download it from the Hugging Face Hub, "
                             "pip install huggingface_hub") from None
        files = huggingface_hub.list_repo_files(repo_id)
        if PIPELINE_FILE in files:
            folder = huggingface_hub.snapshot_download(repo_id)
            return cls._from_folder(Path(folder))
        weights = [f for f in files if f.endswith((".pth", ".pt", ".safetensors", ".bin"))]
        if len(weights) != 1:
            raise ValueError(f"{repo_id}: expected one weights file, found {weights or 'none'}")
        name = repo_id.rsplit("/", 1)[-1].lower()  # e.g. lpd_l_256 -> config lpd-l at 256px
        parts = name.split("_")
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(f"{repo_id}: cannot tell the config from the name; download the file and pass "
                             "checkpoint= and config=")
        config, size = f"{parts[0]}-{parts[1]}", int(parts[2])
        ckpt = huggingface_hub.hf_hub_download(repo_id, weights[0])
        tok = tokenizer if tokenizer is not None else huggingface_hub.hf_hub_download(*HF_TOKENIZER)
        return cls._from_files(ckpt, config, tok, size)

    def save_pretrained(self, folder: PathLike, *, dtype: torch.dtype = torch.float32,
                        tokenizer_name: str | None = None) -> Path:
        """Write the pipeline as a folder that :meth:`from_pretrained` reads (weights in ``dtype``).
        ``tokenizer_name``: name a shipped tokenizer (``"fmnist"``, ``"fmnist-256"``) instead of writing its weights."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = self.model
        if dtype != torch.float32:
            model = LPD(model.cfg)
            model.load_state_dict({k: v.to(dtype) for k, v in self.model.state_dict().items()}, assign=True)
        model.save(folder / "model")
        tok_spec = tokenizer_name
        if tok_spec is None and self.tokenizer is not None:
            self.tokenizer.save(folder / "tokenizer")
            tok_spec = "tokenizer.safetensors"
        meta = {"model": "model.safetensors", "tokenizer": tok_spec, "sampling": self.sampling.to_dict(),
                "class_names": list(self.class_names) if self.class_names is not None else None}
        atomic_write_json(meta, folder / PIPELINE_FILE)
        return folder


def check_compatible(model: LPD, tokenizer: torch.nn.Module) -> None:
    """The tokenizer must speak the model's vocabulary (it is convolutional: any code grid decodes)."""
    if tokenizer.config.codebook_size != model.cfg.vocab_size:
        raise ValueError(f"tokenizer codebook has {tokenizer.config.codebook_size} entries "
                         f"but the model's vocabulary is {model.cfg.vocab_size}: they were not trained together")


def _looks_like_repo_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))
