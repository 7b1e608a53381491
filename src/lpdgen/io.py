"""Safe, atomic file I/O shared by every component (models, tokenizers, trainers, caches).

Why one module: checkpoints of the LPD network, of the VQ tokenizer and of training runs all need the
same guarantees - load without executing pickled code (``weights_only=True`` or safetensors), fail
with a message that names every wrong key, and never leave a half-written file behind on a crash.

One checkpoint convention for every component (network, tokenizer, classifier), see
:func:`save_checkpoint`: ``<stem>.safetensors`` holds the weights and, in its metadata, what they are
(``kind``) and the config that rebuilds the module; ``<stem>.json`` beside it repeats both for people and
tools (``{"kind", "config", ...}``). Loaders read the config from the file, never guess it, and return
the module in eval mode.

Damaged weights must fail loudly, not decode into plausible-looking garbage: a byte flipped inside the
tensor data of a safetensors file still parses, and a model with a few wrong weights still produces
images (identical ones, typically). So :func:`save_safetensors` stores a sha256 of the tensors in the
file's metadata and :func:`load_state_dict_file` checks it; files without one (published checkpoints,
``.pth`` pickles, files of lpdgen 0.1) still load. Every loaded floating-point tensor must be finite.
"""

from __future__ import annotations

import hashlib
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


CHECKSUM_KEY = "lpdgen_sha256"  # safetensors metadata: sha256 of the tensors (:func:`tensors_sha256`)


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict: per tensor in name order, its name, dtype, shape and raw bytes.

    Computed from the tensors, not from the file's byte layout, so it means the same whatever order or
    alignment the safetensors writer chooses; any changed value, name, dtype or shape changes it."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Save tensors as safetensors atomically (tensors are made contiguous and moved to CPU), with their
    sha256 (:func:`tensors_sha256`) in the metadata for :func:`load_state_dict_file` to verify."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    metadata = {**(metadata or {}), CHECKSUM_KEY: tensors_sha256(flat)}
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
    and ``ValueError`` for anything that is not a readable state dict, for safetensors whose tensors do
    not match the sha256 saved with them, and for NaN or infinite floating-point weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        state = {k: v.to(map_location) for k, v in _load_safetensors(path).items()}
    else:
        state = _load_pickle(path, key, map_location)
    _check_finite(state, path)
    return state


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file on the CPU, verified against the sha256 in its metadata when
    there is one (``ValueError`` naming the file when they differ)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
    expected = metadata.get(CHECKSUM_KEY)
    if expected is not None and tensors_sha256(state) != expected:
        raise ValueError(
            f"{path}: the weights are damaged (their sha256 differs from the one saved with them); "
            "download or copy the file again"
        )
    return state


def _load_pickle(path: Path, key: str | None, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=_can_mmap(path))
    except Exception as e:  # torch raises several types for corrupt zips / pickles
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({_first_sentence(e)})") from e
    if isinstance(obj, Mapping) and key is not None and key in obj and isinstance(obj[key], Mapping):
        obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj.keys())[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{path}: expected a state dict (name -> tensor) or {{'{key}': state_dict}}, found {keys}")
    return dict(obj)


def _first_sentence(error: BaseException) -> str:
    """What went wrong, in a few words: torch's unpickling errors run to a paragraph about
    ``weights_only`` that helps nobody holding a damaged or foreign file."""
    text = str(error).strip()
    if "weights only load failed" in text.lower():
        if "unsupported global" in text.lower():
            return "it holds Python objects besides tensors, refused because loading them could run code"
        return "the file is damaged or not a PyTorch file"
    first = text.splitlines()[0][:200] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _check_finite(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN or inf weights: a network holding them decodes nothing but garbage, and the cause
    (a diverged run, a damaged file) is worth knowing before any image is made."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(
                f"{path}: weights {name!r} hold {bad} NaN or infinite values (a diverged "
                "training run, or a damaged file); these weights cannot be used"
            )


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
