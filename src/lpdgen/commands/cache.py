"""`lpdgen cache`: tokenize a dataset (each image and its horizontal flip) into a resumable sharded cache."""

from __future__ import annotations

import argparse

import torch


def register(sub: argparse._SubParsersAction) -> None:
    from ..token_cache import DEFAULT_SHARD_SIZE

    p = sub.add_parser("cache", help="tokenize a dataset into .npy shards (rerun to resume; torchrun to split)")
    p.add_argument("--dataset", default="fmnist", choices=("fmnist", "imagefolder"))
    p.add_argument("--data-root", default=None, help="dataset directory (fmnist default: /usr/share/datasets/fashion-mnist; "
                                                     "imagefolder: e.g. imagenet/train)")
    p.add_argument("--split", default="train", choices=("train", "test"), help="fmnist split")
    p.add_argument("--image-size", type=int, default=256, help="imagefolder center-crop size")
    p.add_argument("--tokenizer", default="fmnist", help="'fmnist' (shipped) or a VQ checkpoint, e.g. vq_ds16_c2i.pt")
    p.add_argument("--out", required=True, help="cache directory (index.json, labels.npy, shard_*.npy)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="images per shard")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (image decoding)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import image_dataset
    from ..token_cache import build_token_cache
    from ..tokenizer import load_tokenizer
    from ..utils import resolve_device

    tokenizer = load_tokenizer(args.tokenizer).to(resolve_device(args.device))
    dataset = image_dataset(args.dataset, args.data_root, args.split, args.image_size)
    with torch.inference_mode():
        index = build_token_cache(tokenizer, dataset, args.out, batch_size=args.batch_size,
                                  shard_size=args.shard_size, num_workers=args.num_workers)
    print(index)
    return 0
