"""Small shared helpers: device choice, seeding, logging, running a module in eval mode."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """The project's one logging style: stdlib ``logging`` under the ``lpdgen`` namespace."""
    return logging.getLogger(name if name.startswith("lpdgen") else f"lpdgen.{name}")


def setup_logging(level: int = logging.INFO) -> None:
    """Configure the root handler once (CLI entry points call this; the library never does), and show the
    library's warnings (e.g. FID from too few images) as one log line each instead of Python's
    "file:line: UserWarning" plus a line of source code."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    warnings.showwarning = _log_warning


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:  # warnings.showwarning's signature
    logging.getLogger("lpdgen").warning("%s", message)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` with its noun in the right number ("1 image", "2 images"): messages are read by people,
    and "1 images" reads as a bug. ``nouns``: the plural when it is not ``noun + "s"``."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def format_duration(seconds: float) -> str:
    """``42`` -> "42 s", ``5400`` -> "1 h 30 min": how long something takes, for people (time estimates)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def default_device() -> torch.device:
    """CUDA if available, then Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> :func:`default_device`; anything else -> ``torch.device``, checked to exist.

    Raises ``ValueError`` for an unknown name (e.g. "gpu") and for a backend this PyTorch build or
    machine lacks (e.g. "cuda" on a CPU-only build), instead of failing later at the first tensor move.
    """
    if device is None or device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use {DEVICE_NAMES}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {device!r} is not available: {why} (torch {torch.__version__}); use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} is not available: {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} is not available on this machine; use cpu or auto")
    elif dev.type not in ("cpu", "meta"):
        raise ValueError(f"unsupported device {device!r}; use {DEVICE_NAMES}")
    return dev


DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """'fp32' / 'bf16' / 'fp16' (or a torch.dtype) -> torch.dtype, with a clear error otherwise."""
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}") from None


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` without dropout, then give it back in the mode it came in (training previews
    decode mid-run; decoding must not change the model)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
