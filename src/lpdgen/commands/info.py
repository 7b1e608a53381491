"""`lpdgen info`: version, device, and the named model configs with their parameter counts."""

from __future__ import annotations

import argparse

import torch

from .. import __version__
from ..utils import default_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print version, device and the named model configs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model import NAMED_CONFIGS, LPDConfig, count_parameters

    print(f"lpdgen {__version__}  torch {torch.__version__}  device {default_device()}")
    print(f"{'config':<10}{'image':>7}{'grid':>8}{'width':>7}{'depth':>7}{'heads':>7}{'parameters':>16}")
    for name in NAMED_CONFIGS:
        for size in (256, 512):
            cfg = LPDConfig.named(name, image_size=size)
            grid = f"{cfg.grid[0]}x{cfg.grid[1]}"
            print(f"{name:<10}{size:>7}{grid:>8}{cfg.width:>7}{cfg.depth:>7}{cfg.heads:>7}{count_parameters(cfg):>16,}")
    return 0
