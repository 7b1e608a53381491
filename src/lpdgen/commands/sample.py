"""`lpdgen sample`: class-conditional images as a labelled grid (one row per class), optionally a folder
of PNGs and a GIF of the decoding. With no arguments it uses the embedded Fashion-MNIST model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..animation import decoding_frames, save_gif
from ..classes import short_name
from ..images import labelled_grid, save_image, save_png
from ..rng import image_seeds
from ..utils import get_logger, plural
from .common import (
    add_model_args,
    add_sampling_args,
    check_output_dir,
    check_output_file,
    check_sampling_args,
    load_pipeline,
    resolve_settings,
)

log = get_logger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
GIF_ROWS = 10  # the animation shows the first image of at most this many rows


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="generate class-conditional images (default: the embedded Fashion-MNIST model)",
        description="Generate a grid of images, one row per class. With no arguments: every class of "
        "the embedded Fashion-MNIST model, at its own steps and guidance.",
    )
    p.add_argument(
        "--class",
        "--classes",
        dest="classes",
        nargs="+",
        default=None,
        metavar="C",
        help="class ids or names, e.g. 'sneaker' 'ankle boot' or 207 (default: every class of the model, "
        "the first 10 of a 1000-class model)",
    )
    p.add_argument("--num", type=int, default=8, metavar="N", help="images per class (one grid row each)")
    add_model_args(p)
    add_sampling_args(p, batch_size=64)
    p.add_argument("--out", default="samples.png", help="the grid: .png, .jpg or .webp ('' to skip)")
    p.add_argument("--out-dir", default=None, help="also write one PNG per image into this folder")
    p.add_argument(
        "--gif",
        default=None,
        metavar="FILE.gif",
        help="also write an animation of the decoding: per step, the image from the tokens known so far "
        "beside the cells chosen at that step (first image of each row)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_sampling_args(args)
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    if args.out:
        check_output_file(args.out, IMAGE_SUFFIXES, flag="--out")
    if args.out_dir:
        check_output_dir(args.out_dir)
    if args.gif:
        check_output_file(args.gif, (".gif",), flag="--gif")
    pipe = load_pipeline(args)
    classes = pipe.class_ids(args.classes) if args.classes else list(range(min(pipe.model.cfg.num_classes, 10)))
    labels = [c for c in classes for _ in range(args.num)]
    settings = resolve_settings(pipe, args)
    steps = settings.num_inference_steps

    images, codes, orders, passes, schedules = [], [], [], [], []
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(labels), args.batch_size), desc="sampling", unit="batch"):
        chunk = labels[start : start + args.batch_size]
        out = pipe(
            chunk,
            **settings.to_dict(),
            seeds=image_seeds(args.seed, range(start, start + len(chunk))),
            output_type="np",
        )
        images.append(out.images)
        codes.append(out.codes)
        orders.append(out.orders)
        passes += out.num_steps
        schedules += out.group_sizes if steps == "auto" else [out.group_sizes] * len(chunk)
    seconds = time.perf_counter() - t0
    tokens = plural(pipe.model.cfg.num_tokens, "token")
    if steps == "auto":  # adaptive: report the mean of the per-image step counts
        mean = np.mean(passes)
        steps_text = f"auto steps (gamma {settings.entropy_bound:g}: {mean:.1f} forward passes per image for {tokens})"
    else:
        steps_text = f"{plural(steps, 'step')} ({plural(steps, 'forward pass', 'forward passes')} for {tokens})"
    arr = np.concatenate(images)
    names = [short_name(pipe.class_names[c]) if pipe.class_names else f"class {c}" for c in classes]
    guidance = settings.guidance_scale
    print(
        f"{plural(len(arr), 'image')} in {seconds:.2f} s ({1e3 * seconds / len(arr):.1f} ms per image), "
        f"{steps_text}, guidance {guidance:g}, "
        f"order {settings.order}, device {pipe.device}"
    )
    if args.out_dir:
        folder = Path(args.out_dir)
        for i, (im, label) in enumerate(zip(arr, labels)):
            save_png(im, folder / f"{i:06d}_class{label}.png")
        print(f"wrote {plural(len(arr), 'image')} to {folder}")
    if args.out:
        scale = max(1, 64 // arr.shape[1])  # small images (32 px) are shown twice as large
        title = f"{steps} steps, guidance {guidance:g}, seed {args.seed}"
        save_image(labelled_grid(arr, names, columns=args.num, scale=scale, title=title), args.out)
        print(f"wrote {args.out}")
    if args.gif:
        first = list(range(0, len(labels), args.num))[:GIF_ROWS]
        if settings.num_inference_steps == "auto":  # images have schedules of their own: show the first one
            first = first[:1]
        all_codes, all_orders = torch.cat(codes), torch.cat(orders)
        frames = decoding_frames(
            all_codes[first],
            all_orders[first],
            schedules[first[0]],
            lambda c: pipe.decode(c, "np"),
            scale=max(2, 128 // arr.shape[1]),
            captions=names[: len(first)],
        )
        save_gif(frames, args.gif)
        print(f"wrote {args.gif} ({plural(len(frames), 'frame')})")
    return 0
