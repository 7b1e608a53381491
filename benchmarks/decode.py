"""Decoding speed: LPD's parallel steps vs one-token-per-step decoding on the same weights.

Measures, for one config and dtype, the latency of generating a batch-1 image (with CFG, as published)
and the throughput at a larger batch, for each requested step count; 256 steps of one token is the
raster-style baseline on the same network. Weights are random: speed does not depend on them.

    python benchmarks/decode.py --config small-50m --steps 20 256
    python benchmarks/decode.py --config lpd-l --steps 20 256 --throughput-batch 0 --repeats 1

Prints a table and writes JSON (``--json``). Run on a quiet machine; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
from _common import write_result

from lpdgen import LPD, LPDConfig
from lpdgen.generation import generate
from lpdgen.model import count_parameters
from lpdgen.orders import group_sizes, locality_aware
from lpdgen.utils import parse_dtype, resolve_device

# Free-form configs for benchmarking without published weights (VQ-16 vocabulary, ImageNet classes).
BENCH_CONFIGS = {
    "small-50m": dict(width=512, depth=12, heads=8),
    "tiny": dict(width=256, depth=4, heads=4),
}


def make_config(name: str, image_size: int) -> LPDConfig:
    if name in BENCH_CONFIGS:
        side = image_size // 16
        return LPDConfig(**BENCH_CONFIGS[name], grid=(side, side), name=name)
    return LPDConfig.named(name, image_size=image_size)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def time_generate(model: LPD, batch: int, steps: int, cfg: float, dtype: torch.dtype, repeats: int, warmup: int) -> dict:
    """Median seconds per ``generate`` call (orders built outside the timed region, reported apart)."""
    device = model.pos_embed.device
    n = model.cfg.num_tokens
    sizes = group_sizes(n, steps)
    labels = torch.randint(0, model.cfg.num_classes, (batch,), device=device)
    t0 = time.perf_counter()
    orders = locality_aware(model.cfg.grid, sizes, batch=batch, seed=0).to(device)
    order_s = time.perf_counter() - t0
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    times = []
    for i in range(warmup + repeats):
        sync(device)
        t0 = time.perf_counter()
        with autocast:
            generate(model, labels, sizes, orders, guidance_scale=cfg, generator=torch.Generator(device=device).manual_seed(i))
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    return {"batch": batch, "steps": steps, "seconds": sec, "images_per_s": batch / sec, "order_ms": order_s * 1e3}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="small-50m", help=f"lpd-l / lpd-xl / lpd-xxl or one of {list(BENCH_CONFIGS)}")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--steps", type=int, nargs="+", default=[20, 256])
    p.add_argument("--latency-batch", type=int, default=1)
    p.add_argument("--throughput-batch", type=int, default=16, help="0 skips the throughput rows")
    p.add_argument("--cfg", type=float, default=4.8, help="guidance scale (doubles the batch, as published)")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--json", default=None, help="also write results here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = parse_dtype(args.dtype)
    cfg = make_config(args.config, args.image_size)
    torch.manual_seed(0)
    with torch.device(device):
        model = LPD(cfg).eval()

    rows = []
    batches = [args.latency_batch] + ([args.throughput_batch] if args.throughput_batch else [])
    for batch in batches:
        for steps in args.steps:
            r = time_generate(model, batch, steps, args.cfg, dtype, args.repeats, args.warmup)
            rows.append(r)
            print(f"  batch {batch:>3} steps {steps:>4}: {r['seconds']:.3f} s", file=sys.stderr)

    head = f"{cfg.name} ({count_parameters(cfg) / 1e6:.1f}M params, {cfg.grid[0]}x{cfg.grid[1]} tokens), {args.dtype}, cfg {args.cfg}, {device}, {torch.get_num_threads()} threads"
    print(head)
    print(f"{'batch':>6}{'steps':>7}{'sec/call':>11}{'img/s':>9}{'speed-up':>10}{'order ms':>10}")
    for r in rows:
        base = next(x for x in rows if x["batch"] == r["batch"] and x["steps"] == max(args.steps))
        r["speedup_vs_most_steps"] = base["seconds"] / r["seconds"]
        print(f"{r['batch']:>6}{r['steps']:>7}{r['seconds']:>11.3f}{r['images_per_s']:>9.2f}{r['speedup_vs_most_steps']:>9.1f}x{r['order_ms']:>10.2f}")
    result = {
        "config": cfg.to_dict(), "params": count_parameters(cfg), "dtype": args.dtype, "cfg": args.cfg,
        "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(), "command": " ".join(["python", "benchmarks/decode.py", *(argv or sys.argv[1:])]),
        "rows": rows,
    }
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
