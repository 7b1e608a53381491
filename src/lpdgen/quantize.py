"""Quantized inference weights: int8 on CPU (oneDNN or fbgemm kernels), int8/int4 weight-only on GPU (torchao).

A conversion the caller asks for (:meth:`lpdgen.model.LPD.quantize`), in place, for decoding only: a
quantized model cannot be trained or saved. It works on any module's Linear layers, so the model
imports this module and never the other way round. Why int8 on CPU: a decoding step is a handful of
Linear layers over a few hundred rows, and integer dot products (VNNI / AMX) run them several times
faster than fp32; docs/engine.md has the measurements behind every default here.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

QUANTIZE_MODES = ("int8", "int8-weight", "int4-weight")

# Which Linear layers int8 keeps in fp32, chosen by measurement (benchmarks/quantize.py; the figures are in
# docs/engine.md): the embedding tables are row lookups (no matrix product) and always stay fp32. Keeping
# the large head in fp32 costs more latency than the logit error it saves, and latency is LPD's point, so
# the head is quantized by default; ``quantize_model(model, skip=("head",))`` keeps it fp32.
INT8_SKIP: tuple[str, ...] = ()


def int8_backend() -> str:
    """The quantized-kernel library for ``"int8"``: oneDNN on CPUs with VNNI int8 dot products (AVX512-VNNI
    or AMX), which it uses and fbgemm's dynamic Linear does not; fbgemm elsewhere. Chosen by measurement on
    an AVX512-VNNI + AMX CPU, where oneDNN's lead grows with the rows of a step (figures: docs/engine.md)."""
    vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()
    return "onednn" if vnni and "onednn" in torch.backends.quantized.supported_engines else "fbgemm"


def quantize_model(
    model: nn.Module, mode: str = "int8", *, skip: tuple[str, ...] = INT8_SKIP, backend: str | None = None
) -> nn.Module:
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
    device = next(model.parameters()).device
    if mode == "int8":
        if any(p.dtype != torch.float32 for p in model.parameters()):
            raise ValueError("int8 quantizes an fp32 model; this one has other dtypes")
        if device.type != "cpu":
            raise ValueError(
                f"int8 (dynamic activations) runs on CPU only, the model is on {device}; "
                "on a GPU use 'int8-weight' or 'int4-weight' (needs torchao)"
            )
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


def _quantize_dynamic_int8(model: nn.Module, skip: tuple[str, ...], backend: str) -> None:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if backend not in torch.backends.quantized.supported_engines:
        raise ValueError(
            f"int8 backend {backend!r} is not available here; choose one of {torch.backends.quantized.supported_engines}"
        )
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend  # weights are packed for the engine current at conversion
    try:
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on every call
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            quantize_dynamic(
                model,
                {name: per_channel_dynamic_qconfig for name in _quantized_linears(model, skip)},
                dtype=torch.qint8,
                inplace=True,
            )
    finally:
        torch.backends.quantized.engine = previous


def _quantize_torchao(model: nn.Module, mode: str, skip: tuple[str, ...]) -> None:
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
    except ImportError:
        raise ValueError(f"quantize mode {mode!r} needs the optional torchao package (pip install torchao)") from None
    names = _quantized_linears(model, skip)
    config = Int8WeightOnlyConfig() if mode == "int8-weight" else Int4WeightOnlyConfig()
    quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn in names)
