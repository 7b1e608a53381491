"""`lpdgen cache`: tokenize a dataset (each image and its horizontal flip) into a resumable sharded cache."""

from __future__ import annotations

import argparse

import torch

from .common import UserError, add_device_arg, check_device_arg, check_output_dir, load_tokenizer_arg


def register(sub: argparse._SubParsersAction) -> None:
    from ..training.token_cache import DEFAULT_SAVE_EVERY_S, DEFAULT_SHARD_SIZE

    p = sub.add_parser("cache", help="tokenize a dataset into .npy shards (rerun to resume; torchrun to split)")
    p.add_argument("--dataset", default="fmnist", choices=("fmnist", "imagefolder"), help="which images to tokenize")
    p.add_argument(
        "--data-root",
        default=None,
        help="dataset directory (fmnist default: /usr/share/datasets/fashion-mnist; imagefolder: e.g. imagenet/train)",
    )
    p.add_argument("--split", default="train", choices=("train", "test"), help="fmnist split")
    p.add_argument("--image-size", type=int, default=256, help="imagefolder center-crop size")
    p.add_argument("--tokenizer", default="fmnist", help="'fmnist' (shipped) or a VQ checkpoint, e.g. vq_ds16_c2i.pt")
    p.add_argument("--out", required=True, help="cache directory (index.json, labels.npy, shard_*.npy)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="images per tokenizer forward pass (keep it on reruns: the codes are then byte-identical)",
    )
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="images per shard file")
    p.add_argument(
        "--save-every",
        type=float,
        default=DEFAULT_SAVE_EVERY_S,
        metavar="SECONDS",
        help="save the progress inside a shard this often (and on Ctrl-C)",
    )
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (image decoding)")
    add_device_arg(p)
    p.set_defaults(func=run, interrupt_hint=_interrupt_hint)


def run(args: argparse.Namespace) -> int:
    from ..data import image_dataset
    from ..tokenizer import tokenizer_source
    from ..training.token_cache import build_token_cache

    for flag, value in (("--batch-size", args.batch_size), ("--shard-size", args.shard_size)):
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    if args.num_workers < 0 or not args.save_every > 0:
        raise UserError(f"need --num-workers >= 0 and --save-every > 0, got {args.num_workers} and {args.save_every}")
    check_output_dir(args.out, flag="--out")
    device = check_device_arg(args.device)
    tokenizer = load_tokenizer_arg(args.tokenizer, device)
    dataset = image_dataset(args.dataset, args.data_root, args.split, args.image_size)
    with torch.inference_mode():
        index = build_token_cache(
            tokenizer,
            dataset,
            args.out,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            num_workers=args.num_workers,
            save_every_s=args.save_every,
            source=tokenizer_source(args.tokenizer),
        )
    print(index)
    return 0


def _interrupt_hint(args: argparse.Namespace) -> str:
    from ..training.token_cache import cache_progress

    done, total = cache_progress(args.out)
    if not done:
        return "no images had been encoded, nothing was saved"
    return (
        f"{done} of {total} images encoded and kept in {args.out}; rerun the same command (same --batch-size) to resume"
    )
