"""`lpdgen train`: train LPD on cached tokens; the same command runs alone or under torchrun.

Every :class:`~lpdgen.training.trainer.TrainConfig` field is a flag (``--global-batch``, ``--lr-unit``, ...), with
the published recipe as defaults; the model is a named size or a JSON file of LPDConfig fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..embedded import SHIPPED_TOKENIZERS
from ..utils import get_logger
from .common import UserError, check_device_arg, check_output_dir, load_tokenizer_arg

log = get_logger(__name__)

# TrainConfig fields whose default is None, and so carry no type of their own
_OPTIONAL_TYPES = {"steps": int, "tokenizer": str, "init": str, "resume": str}
_HELP = {
    "out_dir": "checkpoints (ckpt_<step>.pt), log.jsonl, samples/ and the final lpd.safetensors",
    "global_batch": "images per optimizer step over all processes (must divide by the process count)",
    "epochs": "training length in epochs (ignored when --steps is given)",
    "steps": "training length in optimizer steps (overrides --epochs)",
    "lr_unit": "unit of --warmup and --decay-start: epoch or step",
    "warmup": "linear learning-rate warm-up from 0 over this many --lr-unit",
    "decay_start": "constant learning rate until here (in --lr-unit), then cosine to --min-lr at the end",
    "base_lr": "lr = base_lr * global_batch / 256",
    "min_lr": "learning rate at the end of the cosine decay (absolute, not scaled)",
    "weight_decay": "AdamW weight decay (not on biases and LayerNorm gains)",
    "beta1": "AdamW first-moment decay",
    "beta2": "AdamW second-moment decay",
    "grad_clip": "clip the global gradient norm to this (0 disables)",
    "accum_steps": "split each process's batch into this many micro-batches (same result, less memory)",
    "schedules": "'auto' (all schedules of the grid), step counts '8,16,32', or a JSON list of group-size lists",
    "precision": "auto = bf16 autocast on CUDA, fp32 on CPU; bf16 also works on CPU (faster with AVX512-BF16 / AMX)",
    "attention": "auto = FlexAttention on CUDA (compiled), dense boolean mask elsewhere; dense skips the compile",
    "gradient_checkpointing": "recompute activations in the backward pass (less memory, ~30%% slower)",
    "parallel": "under torchrun: ddp (replicated) or fsdp (sharded)",
    "checkpoint_every": "steps between checkpoints (one is also written at the end and on Ctrl-C)",
    "keep_last": "keep this many newest checkpoints (0 = all)",
    "log_every": "steps between log.jsonl records (loss, lr, throughput)",
    "sample_every": "write a sample grid PNG every N steps (0 = never)",
    "sample_count": "images in each sample grid",
    "sample_steps": "decoding steps of the sample grids",
    "sample_cfg": "guidance scale of the sample grids",
    "tokenizer": "the tokenizer the tokens were made with, a shipped name or a VQ checkpoint: it decodes the sample "
    "grids and is recorded with the run, so that `lpdgen sample --model <out-dir>` decodes with it (default: "
    "the one `lpdgen cache` recorded, else a shipped one that fits the model)",
    "tensorboard": "also write TensorBoard scalars (when tensorboard is installed)",
    "init": "initial weights: a published .pth ({'model': state_dict}) or .safetensors; pos_embed is resized",
    "resume": "a checkpoint path, or 'auto' for the newest checkpoint in --out-dir",
    "seed": "seed of weights, data order, generation orders and dropout",
    "device": "auto (CUDA if available, then Apple MPS, else CPU), cpu, cuda, cuda:N or mps",
}


def register(sub: argparse._SubParsersAction) -> None:
    from ..distributed import PARALLEL_MODES
    from ..training.config import ATTENTIONS, LR_UNITS, PRECISIONS, TrainConfig

    choices = {"lr_unit": LR_UNITS, "precision": PRECISIONS, "attention": ATTENTIONS, "parallel": PARALLEL_MODES}
    p = sub.add_parser("train", help="train LPD on cached tokens (one process, or torchrun DDP / FSDP)")
    p.add_argument(
        "--data",
        required=True,
        help="token cache written by `lpdgen cache`, or a published-layout directory of <class>/<name>.npz token files",
    )
    p.add_argument("--flip-prob", type=float, default=0.5, help="probability of training on the flipped image's codes")
    p.add_argument(
        "--model", default="lpd-l", help="named size (lpd-l, lpd-xl, lpd-xxl) or a JSON file of LPDConfig fields"
    )
    p.add_argument("--image-size", type=int, default=256, help="image size of a named model (256 -> 16x16 tokens)")
    p.add_argument("--dropout", type=float, default=None, help="override the model config's dropout (published 0.1)")
    p.add_argument("--label-drop", type=float, default=None, help="override the class-drop probability (published 0.1)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch default)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=_HELP.get(f.name))
        else:
            kind = _OPTIONAL_TYPES.get(f.name, type(f.default))
            p.add_argument(flag, type=kind, default=f.default, choices=choices.get(f.name), help=_HELP[f.name])
    p.set_defaults(func=run, interrupt_hint=_interrupt_hint)


def model_config(name: str, image_size: int, dropout: float | None, label_drop: float | None):
    """LPDConfig from a size name or a JSON file, with the regularisers optionally overridden."""
    from ..model import LPDConfig

    overrides = {k: v for k, v in (("dropout", dropout), ("label_drop", label_drop)) if v is not None}
    path = Path(name)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"model config not found: {path}")
        return LPDConfig.from_dict({**json.loads(path.read_text()), **overrides})
    return LPDConfig.named(name, image_size=image_size, **overrides)


def token_dataset(path: Path, flip_prob: float, seed: int):
    """The token dataset at ``path``: an ``lpdgen cache`` directory, else the published per-image .npz layout."""
    from ..training.token_cache import INDEX
    from ..training.token_datasets import NpzTokenDataset, TokenDataset

    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if (path / INDEX).is_file():
        return TokenDataset(path, flip_prob=flip_prob, seed=seed)
    return NpzTokenDataset(path, flip_prob=flip_prob, seed=seed)


def _interrupt_hint(args: argparse.Namespace) -> str:
    from ..runs import list_checkpoints

    found = list_checkpoints(args.out_dir) if Path(args.out_dir).is_dir() else []
    if not found:
        return "no checkpoint had been written yet, nothing was saved"
    again = "rerun the same command" if args.resume == "auto" else "rerun the same command with --resume auto"
    return f"checkpoint {found[-1]} kept; {again} to continue from it"


def run(args: argparse.Namespace) -> int:
    from ..distributed import destroy_distributed, is_main
    from ..training.previews import resolve_tokenizer
    from ..training.trainer import TrainConfig, train

    check_device_arg(args.device)
    check_output_dir(args.out_dir)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    mcfg = model_config(args.model, args.image_size, args.dropout, args.label_drop)
    dataset = token_dataset(Path(args.data), args.flip_prob, cfg.seed)
    cfg = dataclasses.replace(cfg, tokenizer=resolve_tokenizer(args.tokenizer, mcfg, dataset))
    if cfg.tokenizer is None:
        log.warning(
            "no tokenizer is known for these tokens (the cache records none and no shipped one fits the model): "
            "pass --tokenizer, or lpdgen sample will need --tokenizer to decode this run"
        )
    elif args.tokenizer is None and cfg.tokenizer not in SHIPPED_TOKENIZERS and not Path(cfg.tokenizer).is_file():
        raise UserError(
            f"--data {args.data}: its tokenizer {cfg.tokenizer} (recorded by lpdgen cache) is missing; pass --tokenizer"
        )
    tokenizer = load_tokenizer_arg(cfg.tokenizer) if cfg.tokenizer is not None else None
    try:
        summary = train(mcfg, cfg, dataset, tokenizer=tokenizer)
        if is_main():
            print(json.dumps(summary, indent=2))
    finally:
        destroy_distributed()
    return 0
