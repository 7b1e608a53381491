"""Where a pipeline's parts come from: the embedded model, a pretrained folder, a training run (its
folder or one of its weights files), a Hugging Face repo id, or a checkpoint pair (published ``.pth`` +
tokenizer, or lpdgen's own files).

Why apart from :mod:`lpdgen.pipeline`: finding, reading and checking files is a different idea from
turning labels into images, and it is the part that grows (another hub, another file format). This
module returns the parts (:class:`Parts`); :meth:`lpdgen.pipeline.LPDPipeline.from_pretrained` builds
the pipeline from them.

A pretrained pipeline is a folder::

    model.safetensors  model.json        the LPD weights and LPDConfig (LPD.save)
    tokenizer.safetensors tokenizer.json the VQ tokenizer (VQTokenizer.save), or a shipped name in pipeline.json
    pipeline.json                        class names and the model's own sampling defaults

The embedded Fashion-MNIST models (``LPDPipeline.from_pretrained("fmnist-64" | "fmnist-256")``, no name: the
default one; :mod:`lpdgen.embedded`) are such folders inside the package.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import FASHION_MNIST_CLASSES
from .embedded import DEFAULT_MODEL, EMBEDDED_MODELS, SHIPPED_TOKENIZERS, model_folder
from .io import PathLike, atomic_write_json, read_checkpoint_config
from .model import LPD, LPDConfig
from .runs import FINAL_WEIGHTS, RecordedWeights, is_run_folder, recorded, run_weights
from .settings import PUBLISHED_SAMPLING, SamplingConfig
from .tokenizer import load_tokenizer, shipped_tokenizer_for

PIPELINE_FILE = "pipeline.json"
HF_TOKENIZER = ("FoundationVision/LlamaGen", "vq_ds16_c2i.pt")  # the paper's tokenizer on the Hugging Face Hub


@dataclass
class Parts:
    """What a pipeline is made of; ``sampling`` None = :class:`SamplingConfig`'s defaults for the model."""

    model: LPD
    tokenizer: torch.nn.Module | None
    sampling: SamplingConfig | None = None
    class_names: Sequence[str] | None = None


def load_parts(
    path: PathLike | None = None,
    *,
    checkpoint: PathLike | None = None,
    config: str | LPDConfig | None = None,
    tokenizer: PathLike | torch.nn.Module | None = None,
    image_size: int = 256,
) -> Parts:
    """The parts named by :meth:`lpdgen.pipeline.LPDPipeline.from_pretrained`'s arguments (see there)."""
    if path is not None and checkpoint is not None:
        raise ValueError("pass either a pretrained folder / repo id or checkpoint=, not both")
    if checkpoint is not None:
        if config is None:
            return from_weights(checkpoint, tokenizer)
        return from_files(checkpoint, config, tokenizer, image_size)
    if path is None or str(path) in EMBEDDED_MODELS:
        return from_folder(model_folder(DEFAULT_MODEL if path is None else str(path)))
    folder = Path(path)
    if folder.is_dir():
        if (folder / PIPELINE_FILE).is_file():
            return from_folder(folder)
        if not is_run_folder(folder):
            raise FileNotFoundError(
                f"{folder}: not a pretrained folder (no {PIPELINE_FILE}) nor a training run "
                f"(no {FINAL_WEIGHTS} or ckpt_<step>.pt)"
            )
        return from_weights(run_weights(folder), tokenizer)
    if folder.exists():
        return from_weights(folder, tokenizer)
    if _looks_like_repo_id(str(path)):
        return from_hub(str(path), tokenizer)
    raise FileNotFoundError(f"pretrained folder not found: {path} (embedded models: {', '.join(EMBEDDED_MODELS)})")


def folder_metadata(folder: Path) -> dict:
    """The ``pipeline.json`` of a folder written by :func:`save_parts`, checked: it names the model and
    tokenizer files; ``sampling`` and ``class_names`` are optional."""
    meta_path = folder / PIPELINE_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} has no {PIPELINE_FILE}: not a folder written by LPDPipeline.save_pretrained")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{meta_path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or "model" not in meta or "tokenizer" not in meta:
        raise ValueError(f"{meta_path} must name the 'model' and 'tokenizer' files")
    return meta


def folder_config(folder: Path) -> LPDConfig:
    """The architecture of a pretrained folder's model, read without its weights (e.g. to time random
    weights of the same shape: ``lpdgen bench --config fmnist-256``)."""
    path = folder / folder_metadata(folder)["model"]
    saved = read_checkpoint_config(path, "LPD")
    if saved is None:
        raise ValueError(f"{path}: no model config saved with these weights")
    return LPDConfig.from_dict(saved)


def from_folder(folder: Path) -> Parts:
    """The parts of a folder written by :func:`save_parts`."""
    meta = folder_metadata(folder)
    model = LPD.from_checkpoint(folder / meta["model"])
    tok_spec = meta["tokenizer"]
    tokenizer = (
        None
        if tok_spec is None
        else load_tokenizer(tok_spec if tok_spec in SHIPPED_TOKENIZERS else str(folder / tok_spec))
    )
    if tokenizer is not None:
        check_compatible(model, tokenizer)
    return Parts(model, tokenizer, SamplingConfig.from_dict(meta.get("sampling", {})), meta.get("class_names"))


def from_weights(path: PathLike, tokenizer: PathLike | torch.nn.Module | None = None) -> Parts:
    """Weights that carry their config: a training checkpoint (``ckpt_<step>.pt``) or weights saved with
    it (a run's ``lpd.safetensors`` + ``lpd.json``, :meth:`LPD.save`). The tokenizer is ``tokenizer`` when
    given, else :func:`weights_tokenizer` (the recorded one, else a shipped one that fits; None: codes
    only); the sampling defaults are the run's recorded ones (its preview grids' steps and guidance)."""
    rec = recorded(path)
    if rec is None:
        raise ValueError(
            f"{path}: no config found with these weights; pass config= (an LPDConfig or a name such as 'lpd-l')"
        )
    cfg = LPDConfig.from_dict(rec.config)
    model = LPD.from_checkpoint(path, config=cfg)
    spec = weights_tokenizer(rec) if tokenizer is None else tokenizer
    tok = load_tokenizer(str(spec)) if isinstance(spec, (str, Path)) else spec
    if tok is not None:
        check_compatible(model, tok)
    sampling = dict(rec.sampling)
    if isinstance(sampling.get("num_inference_steps"), int):
        sampling["num_inference_steps"] = min(sampling["num_inference_steps"], cfg.num_tokens)
    # the shipped tokenizers are Fashion-MNIST's: a model of ten classes over their codes learnt its classes
    names = FASHION_MNIST_CLASSES if spec in SHIPPED_TOKENIZERS and cfg.num_classes == 10 else None
    return Parts(model, tok, SamplingConfig.from_dict(sampling) if sampling else None, names)


def weights_tokenizer(rec: RecordedWeights) -> str | None:
    """The tokenizer to decode the codes of recorded weights with: the one the run recorded, else a
    shipped tokenizer that fits the model (runs of lpdgen before it recorded one), else None."""
    if rec.tokenizer is not None:
        return rec.tokenizer
    cfg = LPDConfig.from_dict(rec.config)
    return shipped_tokenizer_for(cfg.vocab_size, cfg.grid)


def from_files(checkpoint: PathLike, config: str | LPDConfig | None, tokenizer, image_size: int) -> Parts:
    """A checkpoint (+ a named config for published files, which carry none) and a tokenizer; a
    published config gets its published sampling settings."""
    model = LPD.from_checkpoint(checkpoint, config=config, image_size=image_size)
    tok = load_tokenizer(str(tokenizer)) if isinstance(tokenizer, (str, Path)) else tokenizer
    if tok is not None:
        check_compatible(model, tok)
    published = PUBLISHED_SAMPLING.get((config, image_size)) if isinstance(config, str) else None
    return Parts(model, tok, published)


def from_hub(repo_id: str, tokenizer: PathLike | None) -> Parts:
    """A Hugging Face repo: a saved pipeline folder, or one published weights file named like ``lpd_l_256``."""
    try:
        import huggingface_hub  # optional: only this path needs it
    except ImportError:
        raise ValueError(
            f"{repo_id!r} is not a local folder; to download it from the Hugging Face Hub, pip install huggingface_hub"
        ) from None
    files = huggingface_hub.list_repo_files(repo_id)
    if PIPELINE_FILE in files:
        return from_folder(Path(huggingface_hub.snapshot_download(repo_id)))
    weights = [f for f in files if f.endswith((".pth", ".pt", ".safetensors", ".bin"))]
    if len(weights) != 1:
        raise ValueError(f"{repo_id}: expected one weights file, found {weights or 'none'}")
    name = repo_id.rsplit("/", 1)[-1].lower()  # e.g. lpd_l_256 -> config lpd-l at 256px
    parts = name.split("_")
    if len(parts) != 3 or not parts[2].isdigit():
        raise ValueError(
            f"{repo_id}: cannot tell the config from the name; download the file and pass checkpoint= and config="
        )
    config, size = f"{parts[0]}-{parts[1]}", int(parts[2])
    ckpt = huggingface_hub.hf_hub_download(repo_id, weights[0])
    tok = tokenizer if tokenizer is not None else huggingface_hub.hf_hub_download(*HF_TOKENIZER)
    return from_files(ckpt, config, tok, size)


def save_parts(
    folder: PathLike, parts: Parts, *, dtype: torch.dtype = torch.float32, tokenizer_name: str | None = None
) -> Path:
    """Write ``parts`` as a folder that :func:`load_parts` reads (weights in ``dtype``).
    ``tokenizer_name``: name a shipped tokenizer (``"fmnist"``, ``"fmnist-256"``) instead of writing its weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = parts.model
    if dtype != torch.float32:
        model = LPD(model.cfg)
        model.load_state_dict({k: v.to(dtype) for k, v in parts.model.state_dict().items()}, assign=True)
    model.save(folder / "model")
    tok_spec = tokenizer_name
    if tok_spec is None and parts.tokenizer is not None:
        parts.tokenizer.save(folder / "tokenizer")
        tok_spec = "tokenizer.safetensors"
    sampling = parts.sampling.to_dict() if parts.sampling is not None else {}
    meta = {
        "model": "model.safetensors",
        "tokenizer": tok_spec,
        "sampling": sampling,
        "class_names": list(parts.class_names) if parts.class_names is not None else None,
    }
    atomic_write_json(meta, folder / PIPELINE_FILE)
    return folder


def check_compatible(model: LPD, tokenizer: torch.nn.Module) -> None:
    """The tokenizer must speak the model's vocabulary (it is convolutional: any code grid decodes)."""
    if tokenizer.config.codebook_size != model.cfg.vocab_size:
        raise ValueError(
            f"tokenizer codebook has {tokenizer.config.codebook_size} entries "
            f"but the model's vocabulary is {model.cfg.vocab_size}: they were not trained together"
        )


def _looks_like_repo_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))
