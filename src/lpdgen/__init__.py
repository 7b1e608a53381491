"""lpdgen: Locality-aware Parallel Decoding (LPD) for autoregressive image generation.

Public names are imported lazily so that ``import lpdgen`` (and the CLI) start fast and a component's
optional weight never burdens another's import.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "LPD": "model",
    "LPDConfig": "model",
    "VQTokenizer": "tokenizer",
    "VQConfig": "tokenizer",
    "LPDPipeline": "pipeline",
    "SamplingConfig": "settings",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'lpdgen' has no attribute {name!r}")
