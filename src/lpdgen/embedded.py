"""The models and tokenizers shipped inside the package, by name: they load with no download.

| name         | tokens           | model folder (assets/)  | tokenizer (assets/)      |
|--------------|------------------|-------------------------|--------------------------|
| `fmnist-64`  | 8x8, 512 codes   | `lpd_fmnist/`           | `vq_fmnist.safetensors`  |
| `fmnist-256` | 16x16, 1024 codes | `lpd_fmnist256/`       | `vq_fmnist256.safetensors` |

`DEFAULT_MODEL` is the one `LPDPipeline.from_pretrained()` and `lpdgen sample` use when given no model;
docs/pretrained.md says how it was chosen.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
EMBEDDED_MODELS = {"fmnist-64": "lpd_fmnist", "fmnist-256": "lpd_fmnist256"}
DEFAULT_MODEL = "fmnist-256"  # better on every quality measure (docs/pretrained.md); 2-4.5x slower per image on CPU
# "fmnist" is the 64-token tokenizer's first name, kept for pipeline folders and commands that use it
SHIPPED_TOKENIZERS = {"fmnist": "vq_fmnist", "fmnist-64": "vq_fmnist", "fmnist-256": "vq_fmnist256"}


def model_folder(name: str) -> Path:
    """The pretrained folder of an embedded model; an unknown name lists the known ones."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; choose one of {', '.join(EMBEDDED_MODELS)}")
    return ASSETS / EMBEDDED_MODELS[name]


def tokenizer_weights(name: str) -> Path:
    """The safetensors file of a shipped tokenizer (its config is the .json beside it)."""
    if name not in SHIPPED_TOKENIZERS:
        raise ValueError(f"unknown shipped tokenizer {name!r}; choose one of {', '.join(SHIPPED_TOKENIZERS)}")
    return ASSETS / f"{SHIPPED_TOKENIZERS[name]}.safetensors"
