"""docs/editing.png: zero-shot edits of real Fashion-MNIST test images with the embedded model.

    python scripts/editing_figure.py                      # writes docs/editing.png
    python scripts/editing_figure.py --seeds 0 1 2 3 4 --out /tmp/editing.png

One row per (operation, image): the input, the token cells regenerated (white), then one result per
seed. The test image of a row is the first of its class in the test split.
"""

from __future__ import annotations

import argparse

import numpy as np

from lpdgen.data import FashionMNIST
from lpdgen.editing import box_mask
from lpdgen.images import labelled_grid, save_image
from lpdgen.pipeline import LPDPipeline

# (row label, operation, class of the input image, region in pixels (x0, y0, x1, y1), label of the result);
# inpaint regenerates the region, outpaint keeps it
ROWS = [
    ("inpaint", "inpaint", "Trouser", (8, 8, 24, 24), "Trouser"),
    ("inpaint", "inpaint", "Sneaker", (8, 12, 24, 24), "Sneaker"),
    ("outpaint", "outpaint", "Bag", (8, 8, 24, 24), "Bag"),
    ("outpaint", "outpaint", "Ankle boot", (4, 4, 28, 20), "Ankle boot"),
    ("T-shirt -> dress", "inpaint", "T-shirt/top", (0, 16, 32, 32), "Dress"),
    ("pullover -> coat", "inpaint", "Pullover", (0, 16, 32, 32), "Coat"),
    ("sandal -> sneaker", "inpaint", "Sandal", (0, 0, 32, 16), "Sneaker"),
]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--out", default="docs/editing.png")
    args = p.parse_args(argv)

    pipe = LPDPipeline.from_pretrained("fmnist-64")  # docs/editing.md describes its 8x8 cells
    data = FashionMNIST(split="test")
    cell = pipe.tokenizer.config.downsample
    tiles, labels = [], []
    for name, op, source, box, target in ROWS:
        index = int(np.flatnonzero(data.labels == data.classes.index(source))[0])
        image = data.images[index].numpy()  # (32, 32) uint8
        n = len(args.seeds)
        batch = np.repeat(image[None], n, 0)
        if op == "inpaint":
            out = pipe.inpaint(batch, box_mask(box, n, pipe.image_size), target, seeds=args.seeds, output_type="np")
        else:
            out = pipe.outpaint(batch, box, target, seeds=args.seeds, output_type="np")
        regenerated = (~out.known[0]).numpy().repeat(cell, 0).repeat(cell, 1)  # (H, W) cells -> pixels
        row = [image[..., None], (regenerated * 255).astype(np.uint8)[..., None], *out.images]
        tiles += row
        labels.append(f"{name}: {source.lower()}" if source == target else name)
    grid = labelled_grid(
        np.stack(tiles),
        labels,
        columns=2 + len(args.seeds),
        scale=3,
        title=f"input | regenerated cells | seeds {' '.join(map(str, args.seeds))}",
    )
    save_image(grid, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
