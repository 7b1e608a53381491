"""`lpdgen sample`: class-conditional images from an LPD checkpoint, as a PNG grid and/or a folder."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..utils import get_logger

log = get_logger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate class-conditional images with an LPD model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="LPD weights: .safetensors saved by lpdgen, or a published .pth")
    p.add_argument("--config", default=None, help="config name for checkpoints without a JSON config (e.g. lpd-l)")
    p.add_argument("--image-size", type=int, default=256, help="with --config: 256 or 512")
    p.add_argument("--tokenizer", default="fmnist",
                   help="'fmnist' (the shipped Fashion-MNIST tokenizer) or a VQ checkpoint such as vq_ds16_c2i.pt")
    p.add_argument("--classes", type=int, nargs="*", default=None, help="class ids (default: every class once)")
    p.add_argument("--per-class", type=int, default=1, help="images per listed class")
    p.add_argument("--steps", type=int, default=20, help="decoding steps (forward passes)")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale")
    p.add_argument("--cfg-schedule", default="linear", choices=("linear", "constant"))
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--order", default="locality", choices=("locality", "raster", "random", "halton"))
    p.add_argument("--rho", type=float, default=2.0, help="repulsion threshold of the locality-aware order")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i, whatever the batch size")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="samples.png", help="PNG grid of all images ('' to skip)")
    p.add_argument("--out-dir", default=None, help="also write one PNG per image here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..images import image_grid, save_png
    from ..model import LPD
    from ..pipeline import LPDPipeline
    from ..tokenizer import load_tokenizer
    from ..utils import resolve_device

    device = resolve_device(args.device)
    model = LPD.from_checkpoint(args.checkpoint, config=args.config, image_size=args.image_size, device=device)
    tokenizer = load_tokenizer(args.tokenizer).to(device)
    check_compatible(model, tokenizer)
    classes = args.classes if args.classes else list(range(model.cfg.num_classes))
    labels = [c for c in classes for _ in range(args.per_class)]
    if args.batch_size < 1 or args.per_class < 1:
        raise ValueError("--batch-size and --per-class must be >= 1")
    pipe = LPDPipeline(model, tokenizer, rho=args.rho)
    images = []
    for start in tqdm(range(0, len(labels), args.batch_size), desc="sampling", unit="batch"):
        chunk = labels[start:start + args.batch_size]
        out = pipe(chunk, num_inference_steps=args.steps, guidance_scale=args.cfg, cfg_schedule=args.cfg_schedule,
                   temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, order=args.order,
                   seeds=[args.seed + start + i for i in range(len(chunk))], output_type="np")
        images.append(out.images)
    import numpy as np

    arr = np.concatenate(images)
    if args.out_dir:
        folder = Path(args.out_dir)
        for i, (im, label) in enumerate(zip(arr, labels)):
            save_png(im, folder / f"{i:06d}_class{label}.png")
        log.info("wrote %d images to %s", len(arr), folder)
    if args.out:
        columns = args.per_class if args.per_class > 1 else max(1, math.ceil(math.sqrt(len(arr))))
        save_png(image_grid(arr, columns=columns), args.out)
        log.info("wrote a grid of %d images to %s", len(arr), args.out)
    return 0


def check_compatible(model: torch.nn.Module, tokenizer: torch.nn.Module) -> None:
    """The tokenizer must speak the model's vocabulary (it is convolutional: any code grid decodes)."""
    if tokenizer.config.codebook_size != model.cfg.vocab_size:
        raise ValueError(f"tokenizer codebook has {tokenizer.config.codebook_size} entries "
                         f"but the model's vocabulary is {model.cfg.vocab_size}")
