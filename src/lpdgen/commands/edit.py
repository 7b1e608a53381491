"""`lpdgen edit inpaint|outpaint`: regenerate part of an image with the model, keeping the rest token for
token (class-conditional editing is inpainting with another class). With no model flags it uses the
embedded Fashion-MNIST model, whose images are 32x32 (28x28 Fashion-MNIST padded with black)."""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..animation import decoding_frames, save_gif
from ..editing import box_mask, check_box, check_keeps_a_cell, pad_to
from ..images import save_image
from ..rng import image_seeds
from ..utils import get_logger, plural
from .common import (
    UserError,
    add_model_args,
    add_sampling_args,
    check_input_file,
    check_output_file,
    check_sampling_args,
    load_pipeline,
    resolve_settings,
    sampling_overrides,
)

log = get_logger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
ROLE = {"inpaint": "regenerate", "outpaint": "keep"}  # what --box / --mask mark, per operation


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edit",
        help="inpaint or outpaint an image (class-conditional editing: inpaint with another class)",
        description="Regenerate part of an image. The kept token cells are prefilled into the model's "
        "cache in one pass and come back unchanged; only the others are generated.",
    )
    ops = p.add_subparsers(dest="edit_command", metavar="<operation>")
    ops.required = True
    for op, help_text in (
        ("inpaint", "regenerate the inside of --box / the white pixels of --mask"),
        ("outpaint", "keep the inside of --box / the white pixels of --mask, generate the rest"),
    ):
        o = ops.add_parser(
            op,
            help=help_text,
            description=f"{op}: {help_text}. A token cell is regenerated when any "
            "of its pixels is; the result is written at the input's size.",
        )
        o.add_argument(
            "--image",
            required=True,
            help="input image at the model's size (32x32 for the embedded model); a smaller one is "
            "centered on black (28x28 Fashion-MNIST as in training), --box and --mask are on the input",
        )
        where = o.add_mutually_exclusive_group(required=True)
        where.add_argument(
            "--box",
            type=int,
            nargs=4,
            metavar=("X0", "Y0", "X1", "Y1"),
            help=f"pixel box to {ROLE[op]} (x1, y1 exclusive)",
        )
        where.add_argument(
            "--mask",
            default=None,
            help=f"mask image of the input's size: white (non-zero) pixels are the ones to {ROLE[op]}",
        )
        o.add_argument(
            "--class",
            dest="label",
            required=True,
            metavar="C",
            help="class id or name of the result, e.g. 'dress' (another class than the image's edits it)",
        )
        o.add_argument("--out", required=True, help="the edited image: .png, .jpg or .webp")
        o.add_argument(
            "--gif",
            default=None,
            metavar="FILE.gif",
            help="also write the edit step by step: the kept tokens, then each step's new ones",
        )
        add_model_args(o)
        add_sampling_args(o, batch_size=1)
        o.set_defaults(func=run)


def _read_image(path: str, flag: str, mode: str):
    check_input_file(path, flag=flag)
    try:
        with Image.open(path) as im:
            return im.convert(mode)
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{flag} {path}: not a readable image ({e})") from None


def run(args: argparse.Namespace) -> int:
    op = args.edit_command
    check_sampling_args(args)
    check_input_file(args.image, flag="--image")
    if args.mask:
        check_input_file(args.mask, flag="--mask")
    check_output_file(args.out, IMAGE_SUFFIXES, flag="--out")
    if args.gif:
        check_output_file(args.gif, (".gif",), flag="--gif")
    pipe = load_pipeline(args)
    label = pipe.class_ids([args.label])
    size = pipe.image_size
    image = np.asarray(_read_image(args.image, "--image", "L" if pipe.tokenizer.config.image_channels == 1 else "RGB"))
    height, width = image.shape[:2]
    if height > size[0] or width > size[1]:
        raise UserError(
            f"--image {args.image} is {width}x{height} pixels; this model edits {size[1]}x{size[0]} "
            f"images (smaller ones are centered on black)"
        )
    if args.box is not None:
        try:
            region = box_mask(check_box(args.box, (height, width)), 1, (height, width))[0]
        except ValueError as e:
            raise UserError(f"--box: {e}") from None
    else:
        mask_image = _read_image(args.mask, "--mask", "L")
        if mask_image.size != (width, height):
            raise UserError(
                f"--mask {args.mask} is {mask_image.size[0]}x{mask_image.size[1]} pixels; the image is {width}x{height}"
            )
        region = np.asarray(mask_image) > 0
    (padded,), (top, left) = pad_to(image[None], size)
    (region,), _ = pad_to(region[None], size)
    if (top, left) != (0, 0):
        log.info(
            "centered the %dx%d image on a black %dx%d canvas, as the model was trained; the result is cropped back",
            width,
            height,
            size[1],
            size[0],
        )
    if op == "outpaint":
        try:
            check_keeps_a_cell(
                region[None],
                pipe.tokenizer.config.downsample,
                "the box" if args.box is not None else "the white part of the mask",
            )
        except ValueError as e:
            raise UserError(f"{'--box' if args.box is not None else '--mask'}: {e}") from None
    regenerate = region if op == "inpaint" else ~region
    resolve_settings(pipe, args)  # the flags against this model, a mistake named by its flag
    out = pipe.inpaint(
        padded[None], regenerate, label, seeds=image_seeds(args.seed, [0]), output_type="np", **sampling_overrides(args)
    )  # steps left out: the model's own, capped at the masked cells
    kept, schedule = int(out.known.sum()), out.schedule(0)
    save_image(out.images[0][top : top + height, left : left + width], args.out)
    print(
        f"{op}: kept {kept} of {plural(out.known.numel(), 'token cell')}, generated {out.known.numel() - kept} in "
        f"{plural(len(schedule), 'step')} as class {label[0]}"
        f"{f' ({pipe.class_names[label[0]]})' if pipe.class_names else ''}; wrote {args.out}"
    )
    if args.gif:
        sizes = [kept, *schedule] if kept else schedule
        frames = decoding_frames(
            out.codes,
            out.orders,
            sizes,
            lambda c: pipe.decode(c, "np"),
            scale=max(2, 128 // size[0]),
            prefilled=kept > 0,
        )
        save_gif(frames, args.gif)
        print(f"wrote {args.gif} ({plural(len(frames), 'frame')})")
    return 0
