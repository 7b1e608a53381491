"""`lpdgen train-tokenizer`: train a small VQ tokenizer (defaults: the shipped Fashion-MNIST one)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.tokenizer_trainer import TokenizerTrainConfig

    d = TokenizerTrainConfig()
    p = sub.add_parser("train-tokenizer", help="train a VQ tokenizer (reconstruction + codebook + commitment losses)")
    p.add_argument(
        "--dataset",
        default="fmnist",
        choices=("fmnist", "imagefolder"),
        help="Fashion-MNIST from --data-root, or a folder of images (one subfolder per class)",
    )
    p.add_argument(
        "--data-root", default=None, help="dataset directory (fmnist default: /usr/share/datasets/fashion-mnist)"
    )
    p.add_argument("--image-size", type=int, default=256, help="imagefolder crop size")
    p.add_argument(
        "--config", default="fmnist", help="named tokenizer config (fmnist, vq-16) or a JSON file of VQConfig fields"
    )
    p.add_argument(
        "--out-dir", default=d.out_dir, help="checkpoint.pt, vq.safetensors, vq.json, metrics.json; rerun to resume"
    )
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default {d.batch_size})")
    p.add_argument(
        "--lr", type=float, default=d.lr, help=f"peak learning rate, cosine decay after warm-up (default {d.lr:g})"
    )
    p.add_argument(
        "--warmup-steps", type=int, default=d.warmup_steps, help=f"linear warm-up steps (default {d.warmup_steps})"
    )
    p.add_argument(
        "--consistency-weight",
        type=float,
        default=d.consistency_weight,
        help="weight of the round-trip term: re-encoded reconstructions should keep their codes",
    )
    p.add_argument(
        "--init-from",
        default=None,
        help="start from these tokenizer weights (fine-tuning; their config replaces --config)",
    )
    p.add_argument("--beta", type=float, default=d.beta, help="commitment loss weight")
    p.add_argument("--dead-code-every", type=int, default=d.dead_code_every, help="0 disables dead-entry restarts")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help=f"steps between resumable checkpoints, written atomically (default {d.checkpoint_every})",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initial weights and batch order")
    p.add_argument("--device", default=d.device, help=f"torch device: cpu, cuda, mps (default {d.device})")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split PSNR / usage evaluation")
    p.add_argument(
        "--figure",
        default=None,
        help="also write a PNG of test originals vs reconstructions here "
        "(rerun a finished --out-dir to only evaluate and draw)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import image_dataset
    from ..images import save_png
    from ..tokenizer import VQConfig, VQTokenizer
    from ..training.tokenizer_trainer import TokenizerTrainConfig, reconstruction_figure, train_tokenizer

    path = Path(args.config)
    config = VQConfig.from_file(path) if path.suffix == ".json" else VQConfig.named(args.config)
    cfg = TokenizerTrainConfig(
        out_dir=args.out_dir,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        beta=args.beta,
        consistency_weight=args.consistency_weight,
        dead_code_every=args.dead_code_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        device=args.device,
    )
    train = image_dataset(args.dataset, args.data_root, "train", args.image_size)
    test = None if args.no_eval or args.dataset != "fmnist" else image_dataset(args.dataset, args.data_root, "test")
    torch.manual_seed(args.seed)  # the initial weights (module init draws from torch's default stream)
    model = VQTokenizer.from_checkpoint(args.init_from) if args.init_from else VQTokenizer(config)
    metrics = train_tokenizer(model, train, cfg, eval_dataset=test)
    print(json.dumps(metrics, indent=2))
    if args.figure:
        print(save_png(reconstruction_figure(model, test if test is not None else train), args.figure))
    return 0
