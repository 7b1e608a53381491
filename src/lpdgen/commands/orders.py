"""`lpdgen orders`: pre-generate generation orders to a file, or draw one order as a picture.

lpdgen orders --grid 16 --steps 20 --rho 2 --count 50000 --seed 0 --out orders.json
lpdgen orders --grid 16 --steps 20 --type halton --draw order.png
"""

from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from .. import rng
from ..utils import get_logger

log = get_logger(__name__)


def parse_grid(text: str) -> tuple[int, int]:
    """'16' -> (16, 16); '12x16' -> (12, 16)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"grid must look like 16 or 12x16, got {text!r}")
    h, w = (int(parts[0]), int(parts[-1]))
    return h, w


def register(sub: argparse._SubParsersAction) -> None:
    from ..orders import ORDER_TYPES, PUBLISHED_RHO, PUBLISHED_TAU

    p = sub.add_parser(
        "orders",
        help="pre-generate generation orders (.json/.npy) or draw one (.png)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--grid", type=parse_grid, default=(16, 16), help="token grid: 16 or HxW (default 16)")
    p.add_argument("--steps", type=int, default=20, help="generation steps K (default 20)")
    p.add_argument("--type", dest="kind", choices=ORDER_TYPES, default="locality", help="order type")
    p.add_argument("--tau", type=float, default=PUBLISHED_TAU, help="proximity threshold (locality)")
    p.add_argument("--rho", type=float, default=PUBLISHED_RHO, help="Chebyshev repulsion threshold (locality)")
    p.add_argument("--count", type=int, default=1, help="number of orders to write with --out")
    p.add_argument("--seed", type=int, default=0, help="seed of the orders (the same seed gives the same orders)")
    p.add_argument("--batch", type=int, default=1024, help="orders built per call (memory/progress granularity)")
    p.add_argument("--out", default=None, help="write the orders here (.json list of lists, or .npy)")
    p.add_argument("--draw", default=None, help="draw the first order as a picture here (.png)")
    p.add_argument("--cell", type=int, default=24, help="pixels per cell of the drawn colour map")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..orders import build_orders, group_sizes, save_orders

    if args.out is None and args.draw is None:
        raise ValueError("nothing to do: give --out FILE (.json/.npy) and/or --draw FILE (.png)")
    if args.count < 1 or args.batch < 1:
        raise ValueError(f"--count and --batch must be >= 1, got {args.count} and {args.batch}")
    h, w = args.grid
    if h < 1 or w < 1:
        raise ValueError(f"grid sides must be >= 1, got {h}x{w}")
    sizes = group_sizes(h * w, args.steps)
    gen = rng.generator(args.seed)
    count = args.count if args.out is not None else 1
    chunks = []
    with tqdm(total=count, desc=f"{args.kind} orders", unit="order", disable=count < 2 * args.batch) as bar:
        for start in range(0, count, args.batch):
            batch = min(args.batch, count - start)
            chunks.append(build_orders(args.kind, (h, w), sizes, batch=batch, seed=gen, tau=args.tau, rho=args.rho))
            bar.update(batch)
    orders = torch.cat(chunks)
    if args.out is not None:
        path = save_orders(orders, args.out)
        log.info("wrote %d %s orders (%dx%d grid, %d steps) to %s", len(orders), args.kind, h, w, len(sizes), path)
    if args.draw is not None:
        from ..orders.draw import draw_order, save_order_picture

        title = f"{args.kind} order, {h}x{w} grid, {len(sizes)} steps"
        if args.kind == "locality":
            title += f", tau {args.tau:g}, rho {args.rho:g}"
        path = save_order_picture(draw_order(orders[0], sizes, (h, w), title=title, cell=args.cell), args.draw)
        log.info("drew the first order to %s", path)
    return 0
