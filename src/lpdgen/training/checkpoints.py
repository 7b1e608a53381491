"""Training checkpoint files: their names, which are complete, reading one safely (``weights_only``),
and what differs between a saved run's config and the current one. Writing them is the loop's job
(atomic, :class:`lpdgen.training.trainer.Trainer`)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..io import PathLike

CHECKPOINT_FORMAT = "lpdgen-train-1"
CHECKPOINT_RE = re.compile(r"^ckpt_(\d{8})\.pt$")


def checkpoint_path(out_dir: PathLike, step: int) -> Path:
    return Path(out_dir) / f"ckpt_{step:08d}.pt"


def list_checkpoints(out_dir: PathLike) -> list[Path]:
    """Complete training checkpoints in ``out_dir``, oldest first (temporary files never match)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if CHECKPOINT_RE.match(p.name))


def load_training_checkpoint(path: PathLike) -> dict:
    """Read a training checkpoint (``weights_only=True``) and check that it is one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt zips / pickles
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an lpdgen training checkpoint (use --init for model weights)")
    return ckpt


def config_differences(saved: dict, current: dict, ignore: frozenset = frozenset()) -> list[str]:
    """Human-readable ``key: saved -> current`` lines for every differing key not in ``ignore``."""
    keys = sorted((set(saved) | set(current)) - ignore)
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]
