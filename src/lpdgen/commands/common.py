"""Pieces every `lpdgen` command shares: the user-error type, output-path checks that run before any
work, the one definition of the sampling flags, and a help formatter.

Why here: a user mistake must be one line and exit code 2 *before* minutes of generation or feature
extraction, whichever command made it. Defining the checks and the flags once keeps `sample`,
`eval sample` and `eval cfg-search` from drifting apart (help texts, choices, limits).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..embedded import DEFAULT_MODEL, EMBEDDED_MODELS, SHIPPED_TOKENIZERS
from ..settings import FIELDS, SamplingConfig, check_combination, check_values
from ..utils import get_logger

log = get_logger(__name__)


# The CLI flag of each sampling setting, for messages that name what the user typed.
FLAGS: dict[str, str] = {name: f.metadata["flag"] for name, f in FIELDS.items()}


class UserError(Exception):
    """A mistake the user can fix (bad flag, unusable path). The CLI prints it as one line, exit code 2."""


# What the CLI reports as one line (exit 2) instead of a traceback. ValueError / FileNotFoundError are
# the library's convention for bad input (the math modules never import this module).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, FileNotFoundError)

# Called with the parsed arguments when Ctrl-C stops a command: says what was kept and how to resume.
InterruptHint = Callable[[argparse.Namespace], str]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" once: not when the help text already speaks of the default, and not for
    defaults that say nothing (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        quiet = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text.lower() or quiet or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def one_line(error: BaseException) -> str:
    """An exception's message on one line (multi-line messages, e.g. key lists, joined with '; ')."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, OSError) and error.strerror and error.filename:  # "[Errno 2] ..." -> plain words
        text = f"{error.strerror}: {error.filename}"
    parts = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(parts)


def _probe_writable(directory: Path) -> bool:
    """Whether a file can be created in ``directory`` (tried for real: ``os.access`` says yes to root on
    read-only mounts and pseudo file systems such as /proc)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lpdgen-probe.", dir=directory)
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable_dir(directory: Path, flag: str, what: str) -> None:
    """The folder ``directory`` exists and is writable, or can be created."""
    base = _nearest_existing(directory)
    if not base.is_dir():
        raise UserError(f"{flag} {what}: {base} is a file, not a folder; choose another path")
    if not _probe_writable(base):
        raise UserError(f"{flag} {what}: cannot write in {base} (read-only or not a real folder); choose another path")


def check_output_file(path: str | os.PathLike, allowed_suffixes: Iterable[str], *, flag: str = "--out") -> Path:
    """Check before any work that ``path`` can be written as a file with one of ``allowed_suffixes``
    (e.g. ``(".png", ".jpg")``, compared case-insensitively). Raises :class:`UserError` naming ``flag``."""
    path = Path(path)
    allowed = tuple(s.lower() for s in allowed_suffixes)
    if str(path).endswith(os.sep) or path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name ending in {' or '.join(allowed)}")
    if path.suffix.lower() not in allowed:
        raise UserError(
            f"{flag} {path}: unsupported file type {path.suffix or '(none)'!r}; "
            f"use a name ending in {' or '.join(allowed)}"
        )
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} {path} exists and is not a regular file; choose another path")
    _check_creatable_dir(path.parent, flag, str(path))
    return path


def check_output_dir(path: str | os.PathLike, *, flag: str = "--out-dir") -> Path:
    """Check before any work that ``path`` is (or can become) a writable folder. Raises :class:`UserError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder; choose a folder (it is created if missing)")
    _check_creatable_dir(path, flag, str(path))
    return path


def check_input_file(path: str | os.PathLike, *, flag: str) -> Path:
    """An existing regular file, else :class:`UserError` naming ``flag``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file")
    if not path.is_file():
        raise UserError(f"{flag} {path}: file not found")
    return path


# ---- sampling flags -----------------------------------------------------------------------------------


def add_sampling_args(parser: argparse.ArgumentParser, *, batch_size: int = 32, seed: int = 0) -> None:
    """Add the sampling flags of every command that samples, one per :class:`lpdgen.settings.SamplingConfig`
    field (its flag, help and choices come from the field; the dest is the field's name). Every flag
    defaults to None, i.e. to the model's own setting. Check with :func:`check_sampling_args` before
    loading anything; resolve against the model with :func:`resolve_settings`."""
    for f in FIELDS.values():
        meta = f.metadata
        alias = f" ({', '.join(meta['aliases'])}: the same flag, kept for old scripts)" if meta["aliases"] else ""
        parser.add_argument(
            meta["flag"],
            *meta["aliases"],
            dest=f.name,
            type=None if meta["choices"] else meta["parse"] or type(f.default),
            default=None,
            choices=meta["choices"],
            metavar=meta["metavar"],
            help=f"{meta['help']}{alias} (default: the model's own)",
        )
    parser.add_argument(
        "--seed",
        type=int,
        default=seed,
        help="base seed; image i gets its own seed from (seed, i), whatever the batch size",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        metavar="B",
        help="images generated per forward pass (memory, not results, depends on it)",
    )
    add_device_arg(parser)


def sampling_overrides(args: argparse.Namespace) -> dict:
    """The sampling flags that were given, by field name, for ``pipe(..., **sampling_overrides(args))``."""
    return {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}


def resolve_settings(pipe, args: argparse.Namespace) -> SamplingConfig:
    """The settings a command samples with: the model's own, with the flags given put in; a step count
    beyond the model's tokens is named by its flag."""
    given = sampling_overrides(args)
    check_values(given, pipe.model.cfg.num_tokens, names=FLAGS)
    check_combination(
        pipe.sampling.override(pipe.model.cfg.num_tokens, **given), given, pipe.sampling.entropy_bound, FLAGS
    )
    return pipe.settings(**given)


def add_device_arg(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--device``: auto (CUDA, then Apple MPS, else CPU), cpu, cuda, cuda:N or mps."""
    parser.add_argument(
        "--device", default=default, help="auto (CUDA if available, then Apple MPS, else CPU), cpu, cuda, cuda:N or mps"
    )


def check_sampling_args(args: argparse.Namespace) -> None:
    """Refuse impossible sampling flags with one line each, before anything is loaded (the checks are
    :class:`~lpdgen.settings.SamplingConfig`'s, the message names the flag); warn when the guidance
    scale is below 1 (legal, but it steers away from the requested class)."""
    try:
        check_values(sampling_overrides(args), names=FLAGS)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.guidance_scale is not None and args.guidance_scale < 1:
        log.warning(
            "--guidance-scale %g < 1 steers images away from their class; 1 disables guidance, "
            "published models use 1.5-6",
            args.guidance_scale,
        )
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_device_arg(args.device)


def check_device_arg(device: str):
    """The ``--device`` value as a torch.device, or :class:`UserError` saying what is available."""
    from ..utils import resolve_device

    try:
        return resolve_device(device)
    except ValueError as e:
        raise UserError(f"--device: {e}") from None


# ---- model and tokenizer files -----------------------------------------------------------------------


def _recorded_arg(path: Path, flag: str):
    """What the weights at ``path`` say about themselves (:func:`lpdgen.runs.recorded`; None: no config),
    with an unreadable file named by ``flag``."""
    from ..runs import recorded

    try:
        return recorded(path)
    except ValueError as e:
        raise UserError(f"{flag} {e}") from None


def check_checkpoint_arg(checkpoint: str | os.PathLike, config: str | None) -> Path:
    """``--checkpoint`` as an existing file whose architecture is known (a config saved with the weights,
    a training checkpoint, or ``--config``), checked before any weights are read."""
    from ..model import NAMED_CONFIGS

    path = check_input_file(checkpoint, flag="--checkpoint")
    if config is None and _recorded_arg(path, "--checkpoint") is None:
        raise UserError(
            f"--checkpoint {path}: no model config with these weights (no {path.with_suffix('.json').name} "
            f"beside them); pass --config with one of {', '.join(NAMED_CONFIGS)}"
        )
    return path


def check_recorded_tokenizer(weights: Path, what: str, fix: str) -> None:
    """The weights at ``weights`` (which carry their config) can be decoded without ``--tokenizer``: a
    tokenizer was recorded with them and is there, or a shipped one fits; else :class:`UserError` naming
    ``what`` and saying how to ``fix`` it."""
    from ..pretrained import weights_tokenizer

    rec = _recorded_arg(weights, what.split()[0])
    if rec is None:
        raise UserError(f"{what}: no model config saved with {weights}")
    spec = weights_tokenizer(rec)
    if spec is None:
        cfg = rec.config
        raise UserError(
            f"{what}: no tokenizer was recorded with these weights and no shipped one fits "
            f"({cfg['vocab_size']} codes on a {cfg['grid'][0]}x{cfg['grid'][1]} grid); {fix}"
        )
    if spec not in SHIPPED_TOKENIZERS and not Path(spec).is_file():
        raise UserError(f"{what}: the tokenizer recorded with these weights, {spec}, is missing; {fix}")


def load_tokenizer_arg(spec: str, device=None):
    """The tokenizer named by ``--tokenizer``: a shipped one (fmnist, fmnist-256) or a checkpoint file."""
    from ..tokenizer import load_tokenizer

    if spec not in SHIPPED_TOKENIZERS:
        check_input_file(spec, flag="--tokenizer")
    tokenizer = load_tokenizer(spec)
    return tokenizer if device is None else tokenizer.to(device)


# ---- which model: the embedded default, a pretrained folder / repo, or a checkpoint pair ----------------

DTYPES = ("float32", "float16", "bfloat16")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model`` or ``--checkpoint/--config/--tokenizer`` (default: the embedded Fashion-MNIST model), ``--dtype``."""
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME|DIR|FILE|REPO",
        help=f"an embedded model ({', '.join(EMBEDDED_MODELS)}), a model folder (pipeline.json, weights; "
        "scripts/export_pretrained.py writes one), a training run of lpdgen train (its --out-dir: the final "
        "lpd.safetensors, else the newest ckpt_<step>.pt; or one of those files; it samples with the run's "
        "tokenizer and its preview grids' --sample-steps and --sample-cfg), or a Hugging Face repo id such as "
        f"mit-han-lab/lpd_l_256 (needs huggingface_hub and a network); default: the embedded {DEFAULT_MODEL}",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="LPD weights instead of --model: .safetensors saved by lpdgen, a ckpt_<step>.pt of lpdgen train, "
        "or a published .pth",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="with --checkpoint: config name for weights saved without one (lpd-l, lpd-xl, lpd-xxl)",
    )
    parser.add_argument("--image-size", type=int, default=256, help="with --config: 256 or 512")
    parser.add_argument(
        "--tokenizer",
        default=None,
        help=f"with --checkpoint: a shipped tokenizer ({', '.join(SHIPPED_TOKENIZERS)}) or a VQ checkpoint such as "
        "vq_ds16_c2i.pt (default: the one lpdgen train recorded with the weights, or a shipped one that fits; "
        "published weights need it)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPES,
        help="weights dtype (bfloat16/float16 are for GPUs; on CPUs float32 is fastest)",
    )
    add_engine_args(parser)


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """``--quantize`` and ``--compile``: the fast decoding engine (docs/engine.md)."""
    from ..quantize import QUANTIZE_MODES

    parser.add_argument(
        "--quantize",
        default=None,
        choices=QUANTIZE_MODES,
        help="quantize the network's Linear layers: int8 (CPU; the gain depends on model size, "
        "threads and CPU: ~3x for a 111M model at 1 thread with AMX, 1.1-1.7x for the embedded "
        "models at 1 thread on a 2-core AVX512-VNNI CPU and none at 2 threads there; measure yours with "
        "lpdgen bench, docs/engine.md), int8-weight / int4-weight (GPU, needs torchao)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the per-step decoding function (torch.compile; CUDA graphs on GPUs)",
    )


def check_model_arg(model: str) -> Path | None:
    """``--model`` as the command line says it, before any weights are read: an embedded name, a model
    folder (pipeline.json), a training run (its folder, or one of its weights files) whose tokenizer is
    known. Returns the weights a training run samples with (None for the rest); anything else that is not
    on disk is left to the loader (a Hugging Face repo id)."""
    from ..pretrained import PIPELINE_FILE
    from ..runs import FINAL_WEIGHTS, is_run_folder, run_weights

    if model in EMBEDDED_MODELS:
        return None
    path = Path(model)
    if path.is_file():
        if _recorded_arg(path, "--model") is None:
            raise UserError(
                f"--model {path} is a file with no model config saved with it; give a model folder or a "
                "training run, or pass weights with --checkpoint (with --tokenizer, and --config)"
            )
        check_recorded_tokenizer(path, f"--model {path}", f"pass --checkpoint {path} --tokenizer FILE")
        return path
    if not path.is_dir() or (path / PIPELINE_FILE).is_file():
        return None
    if not is_run_folder(path):
        raise UserError(
            f"--model {path}: not a model folder (no {PIPELINE_FILE}; scripts/export_pretrained.py writes one) nor "
            f"a training run (no {FINAL_WEIGHTS} or ckpt_<step>.pt; `lpdgen train --out-dir {path}` writes one)"
        )
    try:
        weights = run_weights(path)
    except FileNotFoundError as e:
        raise UserError(f"--model {e}") from None
    check_recorded_tokenizer(weights, f"--model {path}", f"pass --checkpoint {weights} --tokenizer FILE")
    return weights


def load_pipeline(args: argparse.Namespace, device=None):
    """The pipeline the model flags name, on ``device`` (default: ``--device``) in ``--dtype``; sampling
    flags go to each call (:func:`resolve_settings`)."""
    import torch

    from ..pipeline import LPDPipeline

    device = check_device_arg(args.device) if device is None else device
    if args.model is not None and args.checkpoint is not None:
        raise UserError("pass either --model or --checkpoint, not both")
    if args.checkpoint is None and (args.config is not None or args.tokenizer is not None):
        raise UserError("--config and --tokenizer go with --checkpoint")
    if args.model is not None:
        weights = check_model_arg(args.model)
        if weights is not None and weights != Path(args.model):
            kind = "its final weights" if weights.suffix == ".safetensors" else "its newest checkpoint"
            log.info("--model %s: sampling %s (%s)", args.model, weights.name, kind)
    if args.checkpoint is not None:
        path = check_checkpoint_arg(args.checkpoint, args.config)
        if args.tokenizer is not None:
            if args.tokenizer not in SHIPPED_TOKENIZERS:
                check_input_file(args.tokenizer, flag="--tokenizer")
        elif args.config is not None:
            raise UserError(
                "--checkpoint with --config needs --tokenizer ('fmnist' or a VQ checkpoint file) to turn codes into images"
            )
        else:
            check_recorded_tokenizer(
                path, f"--checkpoint {path}", "pass --tokenizer (a shipped name or a VQ checkpoint)"
            )
    return LPDPipeline.from_pretrained(
        args.model,
        checkpoint=args.checkpoint,
        config=args.config,
        tokenizer=args.tokenizer,
        image_size=args.image_size,
        device=device,
        dtype=getattr(torch, args.dtype),
        quantize=args.quantize,
        compile=args.compile,
    )
