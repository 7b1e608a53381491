"""What the decoding benchmarks share: the model/schedule arguments, a random-weight model, round-robin
timing on a shared machine and the JSON result file. Imported by the scripts beside it
(``python benchmarks/engine.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from lpdgen import LPD, LPDConfig
from lpdgen.io import atomic_write_json
from lpdgen.orders import group_sizes

# wall-clock seconds, or this process's CPU seconds: on a machine shared with normal-priority jobs a
# nice-19 benchmark spends most wall time waiting for a core, and with one thread its CPU time is the work
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def add_decode_args(p: argparse.ArgumentParser) -> None:
    """Config (default width 768, depth 12: 111M parameters, 16x16 tokens, VQ-16 vocabulary), schedule
    and timing arguments of a decode benchmark."""
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=4.8, help="guidance scale (doubles the batch)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument(
        "--clock",
        choices=CLOCKS,
        default="wall",
        help="time wall seconds or process CPU seconds (use with --threads 1)",
    )
    p.add_argument("--json", default=None, help="also write the results here")


def random_model(args: argparse.Namespace) -> tuple[LPD, list[int]]:
    """The benchmark's model (random weights, seed 0: speed does not depend on them) in eval mode and
    its group sizes; applies ``--threads``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = LPDConfig(width=args.width, depth=args.depth, heads=args.heads, grid=(16, 16))
    return LPD(cfg).eval(), group_sizes(cfg.num_tokens, args.steps)


def time_round_robin(
    fns: Mapping[str, Callable[[], Any]], repeats: int, clock: str = "wall"
) -> tuple[dict[str, float], list[float]]:
    """Median seconds (of :data:`CLOCKS` ``clock``) of each function, timed round-robin (repeat r of every
    function, then r + 1) so that load drift on a shared machine hits all alike; also the 1-minute load
    average before and after."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    load_before = os.getloadavg()[0]
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = CLOCKS[clock]()
            fn()
            times[name].append(CLOCKS[clock]() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, [load_before, os.getloadavg()[0]]


def write_result(path: str | None, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON to ``path`` (atomically) when a path is given."""
    if path:
        atomic_write_json(result, path)
