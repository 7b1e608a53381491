"""Safe, atomic file I/O shared by every component (models, tokenizers, trainers, caches).

Why one module: checkpoints of the LPD network, of the VQ tokenizer and of training runs all need the
same guarantees - load without executing pickled code (``weights_only=True`` or safetensors), fail
with a message that names every wrong key, and never leave a half-written file behind on a crash.

One checkpoint convention for every component (network, tokenizer, classifier), see
:func:`save_checkpoint`: ``<stem>.safetensors`` holds the weights and, in its metadata, what they are
(``kind``) and the config that rebuilds the module; ``<stem>.json`` beside it repeats both for people and
tools (``{"kind", "config", ...}``). Loaders read the config from the file, never guess it, and return
the module in eval mode.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

PathLike = str | os.PathLike


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Write a file atomically: ``write(tmp_path)`` fills a temporary file beside ``path``, which is
    then renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows). A crash mid-write
    leaves the old file (or none), never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_json(obj: Any, path: PathLike) -> Path:
    """Write indented JSON atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

    return atomic_write(path, write)


def save_npz(path: PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez`` (uncompressed) through :func:`atomic_write`."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
            np.savez(f, **arrays)

    return atomic_write(path, write)


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Save tensors as safetensors atomically (tensors are made contiguous and moved to CPU)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=metadata))


CHECKPOINT_KIND_KEY = "lpdgen_kind"  # safetensors metadata: which component the weights belong to
CHECKPOINT_CONFIG_KEY = "lpdgen_config"  # safetensors metadata: the JSON config that rebuilds it


def save_checkpoint(module: torch.nn.Module, kind: str, config: Mapping[str, Any], path: PathLike, **info: Any) -> Path:
    """Write ``module``'s weights as ``<stem>.safetensors`` (kind and config in the metadata, so the file
    alone loads) and ``<stem>.json`` = ``{"kind": kind, "config": config, **info}`` (``info``: anything
    worth keeping with the weights, e.g. a test accuracy), both atomically. Returns the weights path."""
    path = Path(path).with_suffix(".safetensors")
    config = json.loads(json.dumps(dict(config)))  # tuples -> lists: what reading it back gives
    save_safetensors(
        module.state_dict(), path, metadata={CHECKPOINT_KIND_KEY: kind, CHECKPOINT_CONFIG_KEY: json.dumps(config)}
    )
    atomic_write_json({"kind": kind, "config": config, **info}, path.with_suffix(".json"))
    return path


def read_checkpoint_config(path: PathLike, kind: str) -> dict[str, Any] | None:
    """The config saved with the weights at ``path`` by :func:`save_checkpoint`: from ``<stem>.json``, else
    from the safetensors metadata; None when there is neither (published pickles carry no config).

    Also reads the sidecars of lpdgen 0.1, which held the bare config. Raises ``ValueError`` when the
    files say they hold another kind of weights, or the sidecar is not a JSON object.
    """
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            saved = json.loads(sidecar.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{sidecar}: not valid JSON ({e})") from None
        if not isinstance(saved, dict):
            raise ValueError(f"{sidecar}: expected a JSON object with the checkpoint's config")
        if not isinstance(saved.get("config"), dict):
            return saved  # an lpdgen 0.1 sidecar: the bare config
        found, config, where = saved.get("kind"), saved["config"], sidecar
    elif path.suffix == ".safetensors" and path.is_file():
        meta = _safetensors_metadata(path)
        if CHECKPOINT_CONFIG_KEY not in meta:
            return None
        found, config, where = meta.get(CHECKPOINT_KIND_KEY), json.loads(meta[CHECKPOINT_CONFIG_KEY]), path
    else:
        return None
    if found is not None and found != kind:
        raise ValueError(f"{where} describes {found} weights, not {kind} weights")
    return config


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, what: str) -> torch.nn.Module:
    """Load ``state`` into ``module`` with every name and shape checked (one ``ValueError`` listing all
    mismatches, see :func:`check_state_dict`) and return the module in eval mode, ready to use."""
    check_state_dict({k: v.shape for k, v in module.state_dict().items()}, state, what=what)
    module.load_state_dict(state, strict=True)
    return module.eval()


def load_state_dict_file(
    path: PathLike, *, key: str | None = "model", map_location: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors``, a ``torch.save``'d ``{key: state_dict}`` (the format of
    the published LPD and LlamaGen checkpoints) or a bare ``torch.save``'d state dict.

    Pickles are always read with ``weights_only=True``. Raises ``FileNotFoundError`` for a missing file
    and ``ValueError`` for anything that is not a readable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(map_location))
        except (SafetensorError, OSError, RuntimeError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=_can_mmap(path))
    except Exception as e:  # torch raises several types for corrupt zips / pickles
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(obj, Mapping) and key is not None and key in obj and isinstance(obj[key], Mapping):
        obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj.keys())[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{path}: expected a state dict (name -> tensor) or {{'{key}': state_dict}}, found {keys}")
    return dict(obj)


def _can_mmap(path: Path) -> bool:
    """Memory-map new-style zip checkpoints (large models load without a second copy in RAM)."""
    import zipfile

    return zipfile.is_zipfile(path)


def check_state_dict(
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    found: Mapping[str, torch.Tensor],
    *,
    what: str = "checkpoint",
) -> None:
    """Raise one ``ValueError`` listing missing, unexpected and wrongly-shaped keys (empty lists are
    omitted). ``expected`` maps names to shapes, e.g. ``{k: v.shape for k, v in module.state_dict().items()}``."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [
        f"{k}: checkpoint {tuple(found[k].shape)} vs model {tuple(expected[k])}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k])
    ]
    if missing or unexpected or wrong:
        parts = [f"{what} does not match the model:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
                parts.append(f"  {title}: {shown}")
        raise ValueError("\n".join(parts))
