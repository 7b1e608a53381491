"""The inference engine: a reusable KV cache and an optionally compiled decoding step.

(int8 and the other quantized weights live in :mod:`lpdgen.quantize`.)

Why an object: the fast paths need state that outlives one ``generate`` call. A compiled step is
worth its compile time only when it is reused, and a CUDA graph replays fixed buffer addresses, so the
KV cache must be the same tensors from call to call. :class:`Engine` owns both for one model; the
model itself is never mutated by decoding (quantization is an explicit, in-place conversion the caller
asks for with :meth:`lpdgen.model.LPD.quantize`).

Every decoding step (:meth:`lpdgen.model.LPD.decode_step`) attends over the cache in whole spans of
``kv_span`` slots under a per-step mask (:func:`lpdgen.masks.decode_plan`), so its shapes depend only
on how many rows it feeds and on its span count, never on how far decoding has got.

An engine is made explicitly and passed to :func:`lpdgen.generation.generate` (an
:class:`~lpdgen.pipeline.LPDPipeline` keeps one); there is no hidden cache of engines:

    from lpdgen.generation import generate

    engine = Engine(model, compile=True)         # one per model; keep it for repeated calls
    codes = generate(model, labels, sizes, orders, guidance_scale=4.0, generator=gen, engine=engine)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from .masks import KV_SPAN, PlannedStep
from .model import LPD, KVCache
from .utils import get_logger

log = get_logger(__name__)


class Engine:
    """Decoding for one model with a KV cache reused across calls and, with ``compile=True``, the
    per-step function compiled by ``torch.compile`` (CPU: inductor; CUDA: ``mode="reduce-overhead"``,
    i.e. CUDA graphs). A compile failure falls back to eager decoding with one warning.

    Args:
        model: the LPD network (fp32, bf16, autocast or :meth:`LPD.quantize`-d).
        compile: compile the decoding step (the first calls pay the compile time).
        mode: ``torch.compile`` mode; None picks "reduce-overhead" on CUDA and the default elsewhere.
        backend: ``torch.compile`` backend ("inductor"; tests use "aot_eager", which compiles in seconds).
        kv_span: steps attend over the cache in whole spans of this many slots
            (:func:`lpdgen.masks.decode_plan`; ``1 + N`` or more: every slot at every step).
    """

    def __init__(
        self,
        model: LPD,
        *,
        compile: bool = False,
        mode: str | None = None,
        backend: str = "inductor",
        kv_span: int = KV_SPAN,
    ):
        if kv_span < 1:
            raise ValueError(f"kv_span must be >= 1, got {kv_span}")
        self.model = model
        self.compile = compile
        self.kv_span = kv_span
        device = model.pos_embed.device
        self.mode = mode if mode is not None or device.type != "cuda" else "reduce-overhead"
        self._cache: KVCache | None = None
        self._step: Callable[..., torch.Tensor] | None = None
        if compile and getattr(model, "quantized", None) == "int8":
            warnings.warn(
                "compiling an int8 model: its dynamic int8 Linear layers break the graph at every layer; "
                "measured slower than eager int8 on CPU (docs/engine.md)",
                RuntimeWarning,
                stacklevel=2,
            )
        if compile:
            # dynamic=None: the first shape change recompiles once with symbolic row counts, not per step
            self._step = torch.compile(model.decode_step, mode=self.mode, dynamic=None, backend=backend)

    @property
    def compiled(self) -> bool:
        """Whether steps run compiled (False after a compile failure fell back to eager)."""
        return self._step is not None

    @property
    def _cudagraphs(self) -> bool:
        return self.compiled and self.mode in ("reduce-overhead", "max-autotune")

    def cache(self, batch: int, device: torch.device) -> KVCache:
        """The KV cache for ``batch`` sequences, reused while batch, dtype and device stay the same."""
        dtype = self.model.cache_dtype(device)
        c = self._cache
        if c is None or c.batch != batch or c.dtype != dtype or c.device != device:
            self._cache = None  # free the old buffers before allocating new ones
            c = self._cache = self.model.new_cache(batch, device, dtype)
            if self._cudagraphs:  # graphs write into these buffers in place: their addresses must not move
                for t in (*c.k, *c.v):
                    torch._dynamo.mark_static_address(t)
        return c

    def step(self, context: torch.Tensor, queries_pos: torch.Tensor, cache: KVCache, step: PlannedStep) -> torch.Tensor:
        """One decoding step (:meth:`LPD.decode_step`) with the slots and mask ``step`` carries, compiled
        when possible."""
        slots, mask = step.slots, step.mask
        if self._step is not None:
            try:
                if self._cudagraphs:  # outputs of the previous step have been consumed
                    torch.compiler.cudagraph_mark_step_begin()
                return self._step(context, queries_pos, cache, slots, mask)
            except Exception as e:  # noqa: BLE001 - any compiler failure; a real bug re-raises eagerly below
                warnings.warn(
                    f"compiling the decoding step failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    "decoding eagerly instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._step = None  # the failed call ran nothing: the cache is as it was
        return self.model.decode_step(context, queries_pos, cache, slots, mask)
