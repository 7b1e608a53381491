"""`lpdgen bench`: decoding latency and throughput of LPD per step count and engine variant.

Why a command: LPD's claim is speed, so measuring it must be one line on any machine. For each variant
(fp32, bf16 autocast, int8, compiled fp32 / bf16 steps) and step count (the published 20 and 32, and
256 one-token steps: raster-style decoding on the same network) it times ``generate`` at the latency
batch (1) and the throughput batch (64), with guidance (the batch is doubled, as published). The
tokenizer's decode is timed apart. Weights are random: speed does not depend on them. Writes a table,
``bench.json`` and ``bench_speedup.png`` (speed-up over one-token fp32 decoding, like the paper's
Figure 1).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from .. import rng
from ..io import atomic_write_json
from ..utils import get_logger

log = get_logger(__name__)

VARIANTS = ("fp32", "bf16", "int8", "compiled", "bf16-compiled", "int8-compiled")
# Free-form sizes beside the published ones (VQ-16 vocabulary, ImageNet classes); the only such table
# (docs/decoding.md's small-50m figures were measured with it).
BENCH_CONFIGS: dict[str, dict] = {
    "base-111m": dict(width=768, depth=12, heads=12),
    "small-50m": dict(width=512, depth=12, heads=8),
    "tiny": dict(width=64, depth=2, heads=4),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time decoding (latency, throughput) per step count and engine variant",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default="lpd-l", help=f"lpd-l / lpd-xl / lpd-xxl or one of {list(BENCH_CONFIGS)}")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument(
        "--steps", type=int, nargs="+", default=[20, 32, 256], help="step counts (256 = one token per step at 256px)"
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        choices=VARIANTS,
        help="default: fp32 int8 compiled on CPU, fp32 bf16 bf16-compiled on CUDA",
    )
    p.add_argument("--latency-batch", type=int, default=1)
    p.add_argument("--throughput-batch", type=int, default=64, help="0 skips the throughput rows")
    p.add_argument(
        "--guidance-scale",
        "--cfg",
        dest="guidance_scale",
        type=float,
        default=4.8,
        help="guidance scale (1 = no guidance: half the work; --cfg is the same flag)",
    )
    p.add_argument(
        "--tokenizer", default="vq-16", help="tokenizer config to time decoding with (random weights), '' to skip"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (compiled variants compile here)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out-dir", default="bench", help="where bench.json and bench_speedup.png go")
    p.set_defaults(func=run)


def bench_config(name: str, image_size: int):
    """A published config or one of :data:`BENCH_CONFIGS` at ``image_size``."""
    from ..model import LPDConfig

    if name in BENCH_CONFIGS:
        if image_size % 16 or image_size <= 0:
            raise ValueError(f"image_size must be a positive multiple of 16, got {image_size}")
        return LPDConfig(**BENCH_CONFIGS[name], grid=(image_size // 16,) * 2, name=name)
    return LPDConfig.named(name, image_size=image_size)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_seconds(fn, device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_engines(model, variants: list[str]) -> dict:
    """One :class:`~lpdgen.engine.Engine` and autocast dtype per variant (int8 works on a quantized copy)."""
    import copy

    from ..engine import Engine

    engines = {}
    for v in variants:
        m = copy.deepcopy(model).quantize("int8") if v.startswith("int8") else model
        dtype = torch.bfloat16 if v.startswith("bf16") else None
        engines[v] = (Engine(m, compile=v.endswith("compiled")), dtype)
    return engines


def run(args: argparse.Namespace) -> int:
    from ..generation import generate
    from ..model import LPD, count_parameters
    from ..orders import group_sizes, locality_aware
    from ..utils import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    variants = args.variants or (
        ["fp32", "bf16", "bf16-compiled"] if device.type == "cuda" else ["fp32", "int8", "compiled"]
    )
    if any(v.startswith("int8") for v in variants) and device.type != "cpu":
        raise ValueError("the int8 variant runs on CPU only (dynamic int8 kernels)")
    if args.repeats < 1 or args.latency_batch < 1 or args.throughput_batch < 0:
        raise ValueError("need --repeats >= 1, --latency-batch >= 1 and --throughput-batch >= 0")
    cfg = bench_config(args.config, args.image_size)
    for s in args.steps:
        group_sizes(cfg.num_tokens, s)  # a clear error for a step count without a schedule
    torch.manual_seed(0)
    with torch.device(device):
        model = LPD(cfg).eval()
    engines = make_engines(model, variants)
    batches = [args.latency_batch] + ([args.throughput_batch] if args.throughput_batch else [])
    rows = []
    for batch in batches:
        labels = torch.arange(batch, device=device) % cfg.num_classes
        for steps in args.steps:
            sizes = group_sizes(cfg.num_tokens, steps)
            orders = locality_aware(cfg.grid, sizes, batch=batch, seed=0).to(device)
            for v, (engine, dtype) in engines.items():

                def call(engine=engine, dtype=dtype):
                    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                        generate(
                            engine.model,
                            labels,
                            sizes,
                            orders,
                            guidance_scale=args.guidance_scale,
                            generator=rng.generator(0, device),
                            engine=engine,
                        )

                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                sec = _median_seconds(call, device, args.repeats, args.warmup)
                rows.append(
                    {
                        "variant": v,
                        "batch": batch,
                        "steps": steps,
                        "seconds": sec,
                        "images_per_s": batch / sec,
                        "load_avg": load,
                        "compiled": engine.compiled,
                    }
                )
                log.info("%s batch %d, %d steps: %.3f s", v, batch, steps, sec)
    one_token = max(args.steps)
    for r in rows:
        base = next(
            x for x in rows if x["variant"] == variants[0] and x["batch"] == r["batch"] and x["steps"] == one_token
        )
        r["speedup"] = base["seconds"] / r["seconds"]
    tok = _time_tokenizer(args.tokenizer, cfg.grid, batches, device, args.repeats) if args.tokenizer else []

    head = (
        f"{cfg.name} ({count_parameters(cfg) / 1e6:.1f}M params, {cfg.grid[0]}x{cfg.grid[1]} tokens), guidance {args.guidance_scale}, "
        f"{device}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(head)
    print(f"{'variant':<15}{'batch':>6}{'steps':>7}{'sec/call':>11}{'img/s':>9}{'speed-up':>10}{'load':>7}")
    for r in rows:
        print(
            f"{r['variant']:<15}{r['batch']:>6}{r['steps']:>7}{r['seconds']:>11.3f}{r['images_per_s']:>9.2f}"
            f"{r['speedup']:>9.1f}x{r['load_avg']:>7.2f}"
        )
    for t in tok:
        print(f"tokenizer decode ({args.tokenizer}), batch {t['batch']}: {t['seconds']:.3f} s")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    result = {
        "config": cfg.to_dict(),
        "params": count_parameters(cfg),
        "guidance_scale": args.guidance_scale,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "speedup_baseline": f"{variants[0]}, {one_token} steps, same batch",
        "rows": rows,
        "tokenizer": tok,
    }
    atomic_write_json(result, out / "bench.json")
    speedup_plot(rows, variants, batches, out / "bench_speedup.png", title=head)
    print(f"wrote {out / 'bench.json'} and {out / 'bench_speedup.png'}")
    return 0


def _time_tokenizer(
    name: str, grid: tuple[int, int], batches: list[int], device: torch.device, repeats: int
) -> list[dict]:
    from ..tokenizer import VQConfig, VQTokenizer

    vq_cfg = VQConfig.named(name)
    with torch.device(device):
        tokenizer = VQTokenizer(vq_cfg).eval()
    out = []
    for batch in batches:
        codes = torch.randint(0, vq_cfg.codebook_size, (batch, *grid), device=device)
        with torch.inference_mode():
            sec = _median_seconds(lambda: tokenizer.decode(codes), device, repeats, warmup=1)
        out.append({"batch": batch, "seconds": sec})
    return out


def speedup_plot(rows: list[dict], variants: list[str], batches: list[int], path: Path, title: str = "") -> Path:
    """Grouped bars of speed-up per step count and variant, one panel per batch (pillow only)."""
    from PIL import Image, ImageDraw

    colors = [(90, 90, 90), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    steps = sorted({r["steps"] for r in rows}, reverse=True)
    panel_w, h, left, bottom, top = 460, 380, 60, 50, 60
    img = Image.new("RGB", (panel_w * len(batches) + 20, h), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title[:140], fill="black")
    top_value = max(r["speedup"] for r in rows) * 1.15
    for p, batch in enumerate(batches):
        x0 = p * panel_w + left
        plot_w, plot_h = panel_w - left - 20, h - top - bottom
        y_of = lambda v: top + plot_h * (1 - v / top_value)  # noqa: E731
        draw.text((x0, top - 24), f"{'latency' if p == 0 else 'throughput'}, batch {batch}: speed-up", fill="black")
        draw.line([(x0, top), (x0, top + plot_h), (x0 + plot_w, top + plot_h)], fill="black")
        for tick in range(0, int(top_value) + 1, max(1, int(top_value) // 5)):
            draw.line([(x0 - 4, y_of(tick)), (x0, y_of(tick))], fill="black")
            draw.text((x0 - 30, y_of(tick) - 6), f"{tick}x", fill="black")
        group_w = plot_w / len(steps)
        bar_w = group_w * 0.8 / len(variants)
        for i, s in enumerate(steps):
            gx = x0 + i * group_w + group_w * 0.1
            draw.text((gx + 4, top + plot_h + 8), f"{s} steps", fill="black")
            for j, v in enumerate(variants):
                r = next((r for r in rows if r["batch"] == batch and r["steps"] == s and r["variant"] == v), None)
                if r is None:
                    continue
                bx = gx + j * bar_w
                draw.rectangle([bx, y_of(r["speedup"]), bx + bar_w - 2, top + plot_h], fill=colors[j % len(colors)])
                draw.text((bx, y_of(r["speedup"]) - 12), f"{r['speedup']:.1f}", fill="black")
        for j, v in enumerate(variants):  # legend
            lx = x0 + 10 + j * 80
            draw.rectangle([lx, top + plot_h + 28, lx + 10, top + plot_h + 38], fill=colors[j % len(colors)])
            draw.text((lx + 14, top + plot_h + 27), v, fill="black")
    from ..io import atomic_write

    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
