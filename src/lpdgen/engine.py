"""The inference engine: a reusable KV cache, an optionally compiled decoding step, int8 weights.

Why an object: the fast paths need state that outlives one ``generate`` call. A compiled step is
worth its compile time only when it is reused, and a CUDA graph replays fixed buffer addresses, so the
KV cache must be the same tensors from call to call. :class:`Engine` owns both for one model; the
model itself is never mutated by decoding (quantization is an explicit, in-place conversion the caller
asks for with :meth:`lpdgen.model.LPD.quantize`).

Every decoding step (:meth:`lpdgen.model.LPD.decode_step`) attends over all 1 + N cache slots under a
per-step mask, so its shapes depend only on how many rows it feeds, never on how far decoding has got.

    engine = Engine(model, compile=True)         # one per model; keep it for repeated calls
    codes = engine.generate(labels, sizes, orders, cfg=4.0, generator=gen)
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable

import torch
from torch import nn

from .masks import KV_SPAN
from .model import LPD, KVCache
from .utils import get_logger

log = get_logger(__name__)

QUANTIZE_MODES = ("int8", "int8-weight", "int4-weight")

# Which Linear layers int8 keeps in fp32, chosen by measurement (benchmarks/quantize.py, fbgemm packing;
# docs/engine.md): the embedding tables are row lookups (no matrix product) and always stay fp32. Keeping the 16384-way
# head in fp32 made a 768/12 batch-1 decode 1.43x slower (batch 8: 1.01x) for a somewhat smaller error
# (greedy agreement with fp32 0.77 vs 0.62 on random weights). Latency is LPD's point, so the head is
# quantized by default; ``quantize_model(model, skip=("head",))`` keeps it fp32.
INT8_SKIP: tuple[str, ...] = ()


def int8_backend() -> str:
    """The quantized-kernel library for ``"int8"``: oneDNN on CPUs with VNNI int8 dot products (AVX512-VNNI
    or AMX), which it uses and fbgemm's dynamic Linear does not; fbgemm elsewhere. Measured on an
    AVX512-VNNI + AMX CPU (docs/engine.md): at the ~400 rows of a batch-8 guided step one 768-3072-768 MLP
    ran 2.5x faster than fp32 with fbgemm and 3.7-7.7x with oneDNN; a 768/12 batch-8 decode went from
    1.9x to 2.8x fp32's speed."""
    vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()
    return "onednn" if vnni and "onednn" in torch.backends.quantized.supported_engines else "fbgemm"


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
            (:func:`lpdgen.masks.decode_slot_masks`; ``1 + N`` or more: every slot at every step).
    """

    def __init__(self, model: LPD, *, compile: bool = False, mode: str | None = None, backend: str = "inductor",
                 kv_span: int = KV_SPAN):
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
            warnings.warn("compiling an int8 model: its dynamic int8 Linear layers break the graph at every layer; "
                          "measured slower than eager int8 on CPU (docs/engine.md)", RuntimeWarning, stacklevel=2)
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

    def step(self, context: torch.Tensor, queries_pos: torch.Tensor, cache: KVCache, slots: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One decoding step (:meth:`LPD.decode_step`), compiled when possible."""
        if self._step is not None:
            try:
                if self._cudagraphs:  # outputs of the previous step have been consumed
                    torch.compiler.cudagraph_mark_step_begin()
                return self._step(context, queries_pos, cache, slots, mask)
            except Exception as e:  # noqa: BLE001 - any compiler failure; a real bug re-raises eagerly below
                warnings.warn(f"compiling the decoding step failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                              "decoding eagerly instead", RuntimeWarning, stacklevel=2)
                self._step = None  # the failed call ran nothing: the cache is as it was
        return self.model.decode_step(context, queries_pos, cache, slots, mask)

    def generate(self, labels: torch.Tensor, group_sizes, orders: torch.Tensor, **kwargs) -> torch.Tensor:
        """Sample (B, N) raster-order codes; arguments as :func:`lpdgen.generation.generate`."""
        from .generation import generate

        return generate(self.model, labels, group_sizes, orders, engine=self, **kwargs)


_COMPILED_ENGINES: weakref.WeakKeyDictionary[LPD, Engine] = weakref.WeakKeyDictionary()


def compiled_engine(model: LPD) -> Engine:
    """The compiled :class:`Engine` of ``model``, made on first use and kept while the model lives (a
    compiled step is only worth its compile time when reused)."""
    engine = _COMPILED_ENGINES.get(model)
    if engine is None:
        engine = _COMPILED_ENGINES[model] = Engine(model, compile=True)
    return engine


def quantize_model(model: LPD, mode: str = "int8", *, skip: tuple[str, ...] = INT8_SKIP, backend: str | None = None) -> LPD:
    """Convert ``model``'s Linear layers in place for inference; returns the model.

    ``"int8"``: int8 weights (per output channel) and int8 activations quantized on the fly
    (``torch.ao.quantization.quantize_dynamic``): CPU only, the fastest path measured on CPU. ``backend``
    ("onednn" or "fbgemm"; None: :func:`int8_backend`) is the kernel library the weights are packed for;
    the packed weights keep it whatever ``torch.backends.quantized.engine`` says later.
    ``"int8-weight"`` / ``"int4-weight"``: weight-only quantization for GPUs through the optional
    ``torchao`` package. Linear layers named in ``skip`` (default :data:`INT8_SKIP`) stay
    as they are; embeddings always do (lookups, no matrix product).
    """
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantize mode {mode!r}; choose one of {QUANTIZE_MODES}")
    if getattr(model, "quantized", None):
        raise ValueError(f"model is already quantized ({model.quantized})")
    model.eval()
    device = model.pos_embed.device
    if mode == "int8":
        if any(p.dtype != torch.float32 for p in model.parameters()):
            raise ValueError("int8 quantizes an fp32 model; this one has other dtypes")
        if device.type != "cpu":
            raise ValueError(f"int8 (dynamic activations) runs on CPU only, the model is on {device}; "
                             "on a GPU use 'int8-weight' or 'int4-weight' (needs torchao)")
        _quantize_dynamic_int8(model, skip, backend or int8_backend())
    else:
        _quantize_torchao(model, mode, skip)
    model.quantized = mode
    return model


def _quantized_linears(model: nn.Module, skip: tuple[str, ...]) -> set[str]:
    """Names of the Linear layers to quantize (all but ``skip``)."""
    linears = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    unknown = set(skip) - linears
    if unknown:
        raise ValueError(f"skip names no Linear layer of the model: {sorted(unknown)}")
    return linears - set(skip)


def _quantize_dynamic_int8(model: LPD, skip: tuple[str, ...], backend: str) -> None:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if backend not in torch.backends.quantized.supported_engines:
        raise ValueError(f"int8 backend {backend!r} is not available here; choose one of {torch.backends.quantized.supported_engines}")
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend  # weights are packed for the engine current at conversion
    try:
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on every call
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in _quantized_linears(model, skip)},
                             dtype=torch.qint8, inplace=True)
    finally:
        torch.backends.quantized.engine = previous


def _quantize_torchao(model: LPD, mode: str, skip: tuple[str, ...]) -> None:
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
    except ImportError:
        raise ValueError(f"quantize mode {mode!r} needs the optional torchao package (pip install torchao)") from None
    names = _quantized_linears(model, skip)
    config = Int8WeightOnlyConfig() if mode == "int8-weight" else Int4WeightOnlyConfig()
    quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn in names)
