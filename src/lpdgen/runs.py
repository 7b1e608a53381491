"""A training run's files, as `lpdgen train` writes them and the commands that sample read them: the
checkpoints (``ckpt_<step>.pt``), the final weights (``lpd.safetensors`` + ``lpd.json``), which of them
to sample with, and what the run recorded beside the weights (model config, tokenizer, the sampling
settings of its preview grids).

Why in the core and not in ``training/``: sampling a run (``lpdgen sample --model runs/x``) must not
need the trainer, and the file names and format are one contract between the two sides, so both
import them from here. Checkpoints are read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .io import PathLike, read_checkpoint_config

CHECKPOINT_FORMAT = "lpdgen-train-1"
CHECKPOINT_RE = re.compile(r"^ckpt_(\d{8})\.pt$")
FINAL_WEIGHTS = "lpd.safetensors"  # + lpd.json, loadable by LPD.from_checkpoint
LOG_FILE = "log.jsonl"


def checkpoint_path(out_dir: PathLike, step: int) -> Path:
    return Path(out_dir) / f"ckpt_{step:08d}.pt"


def list_checkpoints(out_dir: PathLike) -> list[Path]:
    """Complete training checkpoints in ``out_dir``, oldest first (temporary files never match)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if CHECKPOINT_RE.match(p.name))


def load_training_checkpoint(path: PathLike, *, mmap: bool = False) -> dict:
    """Read a training checkpoint (``weights_only=True``) and check that it is one. ``mmap``: map the
    tensors instead of reading them (cheap when only the config is wanted)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises several types for corrupt zips / pickles
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an lpdgen training checkpoint (use --init for model weights)")
    return ckpt


def is_run_folder(folder: PathLike) -> bool:
    """Whether ``folder`` holds a training run (its log, a checkpoint or its final weights)."""
    folder = Path(folder)
    return any((folder / name).is_file() for name in (LOG_FILE, FINAL_WEIGHTS)) or bool(list_checkpoints(folder))


def run_weights(folder: PathLike) -> Path:
    """The weights to sample a training run with: the final ``lpd.safetensors`` when the run finished,
    else its newest checkpoint. ``FileNotFoundError`` saying what is missing and where it comes from."""
    folder = Path(folder)
    if (folder / FINAL_WEIGHTS).is_file():
        return folder / FINAL_WEIGHTS
    found = list_checkpoints(folder)
    if found:
        return found[-1]
    if (folder / LOG_FILE).is_file():
        raise FileNotFoundError(
            f"{folder}: a training run with no checkpoint yet (no {FINAL_WEIGHTS} or ckpt_<step>.pt): "
            "`lpdgen train` writes one every --checkpoint-every steps and at the end"
        )
    raise FileNotFoundError(
        f"{folder}: no {FINAL_WEIGHTS} or ckpt_<step>.pt in it, so not a training run; "
        f"`lpdgen train --out-dir {folder}` writes one"
    )


@dataclass(frozen=True)
class RecordedWeights:
    """What a weights file says about itself: the model config (LPDConfig fields) and, when `lpdgen
    train` wrote it, the tokenizer its tokens came from (a shipped tokenizer's name or a VQ checkpoint
    path) and the sampling settings of its preview grids (SamplingConfig fields)."""

    path: Path
    config: dict[str, Any]
    tokenizer: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)


def recorded(path: PathLike) -> RecordedWeights | None:
    """:class:`RecordedWeights` of a training checkpoint or of weights saved with their config
    (``LPD.save``: ``<stem>.safetensors`` + ``<stem>.json``); None for weights that carry no config
    (published checkpoints: their config must be named)."""
    path = Path(path)
    config = read_checkpoint_config(path, "LPD")
    if config is not None:
        sidecar = _json_object(path.with_suffix(".json"))
        return RecordedWeights(path, config, sidecar.get("tokenizer"), sidecar.get("sampling") or {})
    if not zipfile.is_zipfile(path):  # training checkpoints are torch's zip format; old pickles are not
        return None
    try:
        ckpt = load_training_checkpoint(path, mmap=True)
    except ValueError:
        return None
    train = ckpt.get("train_config") or {}
    sampling = {"num_inference_steps": train.get("sample_steps"), "guidance_scale": train.get("sample_cfg")}
    return RecordedWeights(
        path, ckpt["model_config"], train.get("tokenizer"), {k: v for k, v in sampling.items() if v is not None}
    )


def _json_object(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}
