"""`lpdgen bench`: decoding latency and throughput of LPD per step count and engine variant.

Why a command: LPD's claim is speed, and a speed claim holds only where it was measured, so measuring
it must be one line on the user's own machine. For each variant (fp32, bf16 autocast, int8, compiled
fp32 / bf16 steps) and step count it times ``generate`` at a latency batch and a throughput batch, with
guidance (the batch is doubled, as published). The tokenizer's decode is timed apart. Weights are
random: speed does not depend on them.

The defaults are sized for the machine. On a CPU: the architecture of the default embedded model
(fmnist-256, 16x16 tokens) at its own step count and at one token per step, fp32 and int8, batch 1
and 16 (about 70 s at one thread on 2 shared cores). On CUDA: the published LPD-L at 20, 32 and 256 steps, batch 1 and
64, fp32 / bf16 / compiled bf16. Before the timed work the command logs how long the run will take
(from one call per batch and step count) and how to make it shorter; each row goes into ``bench.json``
as soon as it is measured, so Ctrl-C keeps what was measured. At the end: a table and
``bench_speedup.png`` (speed-up over one-token decoding, like the paper's Figure 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .. import rng
from ..embedded import DEFAULT_MODEL, EMBEDDED_MODELS, SHIPPED_TOKENIZERS
from ..io import atomic_write_json
from ..utils import format_duration, get_logger, plural
from .common import UserError, check_device_arg, check_output_dir

if TYPE_CHECKING:
    from ..model import LPDConfig

log = get_logger(__name__)

VARIANTS = ("fp32", "bf16", "int8", "compiled", "bf16-compiled", "int8-compiled")
# Free-form sizes beside the published ones (VQ-16 vocabulary, ImageNet classes); the only such table
# (docs/decoding.md's small-50m figures were measured with it).
BENCH_CONFIGS: dict[str, dict] = {
    "base-111m": dict(width=768, depth=12, heads=12),
    "small-50m": dict(width=512, depth=12, heads=8),
    "tiny": dict(width=64, depth=2, heads=4),
}
CUDA_CONFIG = "lpd-l"  # what the paper measured (an A100)
PUBLISHED_STEPS = [20, 32, 256]  # LPD's step counts at 256px, and one token per step
PUBLISHED_GUIDANCE = 4.8  # LPD-L 256's guidance scale
THROUGHPUT_BATCH = {"cuda": 64, "cpu": 16}  # the published throughput batch on GPUs; 16 keeps a CPU run short
RESULT_FILE = "bench.json"


def register(sub: argparse._SubParsersAction) -> None:
    from ..model import NAMED_CONFIGS

    p = sub.add_parser(
        "bench",
        help="time decoding (latency, throughput) per step count and engine variant",
        description="Time LPD decoding on this machine (random weights of the chosen architecture). "
        f"On a CPU the defaults time {DEFAULT_MODEL}'s architecture, fp32 and int8, batch 1 and 16, "
        "at its own step count and at one token per step: about 70 s with --threads 1 on 2 shared "
        "cores of an AMD EPYC, more where two threads contend. It logs its own estimate before the "
        "timed work, with what would shorten it. On CUDA: LPD-L at 20, 32 and 256 steps, batch 1 and "
        "64. Rows go into bench.json as they are measured, so Ctrl-C keeps them.",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="NAME",
        help=f"architecture to time: an embedded model ({', '.join(EMBEDDED_MODELS)}), a published size "
        f"({', '.join(NAMED_CONFIGS)}) or one of {', '.join(BENCH_CONFIGS)} (default: {DEFAULT_MODEL} on CPU, "
        f"{CUDA_CONFIG} on CUDA)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="image size of a published or bench size, 256 (16x16 tokens) or 512 (default: 256; the "
        "embedded models have a fixed grid)",
    )
    p.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=None,
        metavar="K",
        help="step counts to time; the largest is the speed-up baseline (default: an embedded model's own "
        f"step count and one token per step, e.g. 20 and 256 for {DEFAULT_MODEL}; otherwise 20 32 256)",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        choices=VARIANTS,
        help="engine variants; the first is the speed-up baseline (default: fp32 int8 on CPU, "
        "fp32 bf16 bf16-compiled on CUDA, fp32 elsewhere)",
    )
    p.add_argument("--latency-batch", type=int, default=1, help="images per call of the latency rows")
    p.add_argument(
        "--throughput-batch",
        type=int,
        default=None,
        help="images per call of the throughput rows, 0 skips them (default: 16 on CPU, 64 on CUDA)",
    )
    p.add_argument(
        "--guidance-scale",
        "--cfg",
        dest="guidance_scale",
        type=float,
        default=None,
        help=f"guidance scale (1 = no guidance: half the work; --cfg is the same flag; default: an embedded "
        f"model's own, else {PUBLISHED_GUIDANCE})",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer config whose decode is timed (random weights): a shipped tokenizer "
        f"({', '.join(SHIPPED_TOKENIZERS)}), vq-16 or tiny; '' skips it (default: an embedded "
        "model's own, else vq-16)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed calls per row, the row reports their median (1: quicker, noisier)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed calls before each row's timed ones (compiled variants compile here); the first "
        "variant's first call per batch and step count also times the estimate",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads, 0 = torch's default (all cores, as lpdgen sample uses); on a shared "
        "machine 1 thread is the fairer figure",
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA if available, then Apple MPS, else CPU), cpu, cuda, cuda:N or mps"
    )
    p.add_argument("--out-dir", default="bench", help="where bench.json and bench_speedup.png go")
    p.set_defaults(func=run, interrupt_hint=_interrupt_hint)


@dataclass(frozen=True)
class BenchModel:
    """An architecture to time and the settings its defaults come from (the model's own, for an
    embedded model: its step count and guidance, and its tokenizer's shape)."""

    name: str
    cfg: LPDConfig
    steps: list[int]
    guidance_scale: float
    tokenizer: str


def bench_model(name: str, image_size: int | None) -> BenchModel:
    """:class:`BenchModel` of ``name``; one-line :class:`UserError` for an unknown name or an image
    size the architecture cannot take."""
    from ..embedded import model_folder
    from ..model import NAMED_CONFIGS, LPDConfig
    from ..pretrained import folder_config, folder_metadata
    from ..settings import SamplingConfig

    if name in EMBEDDED_MODELS:
        if image_size is not None:
            raise UserError(f"--image-size does not apply to --config {name}: its token grid is fixed")
        folder = model_folder(name)
        cfg = folder_config(folder)
        meta = folder_metadata(folder)
        sampling = SamplingConfig.from_dict(meta.get("sampling", {}))
        steps = sorted({int(sampling.num_inference_steps), cfg.num_tokens})
        return BenchModel(name, cfg, steps, sampling.guidance_scale, meta["tokenizer"])
    size = 256 if image_size is None else image_size
    if size <= 0 or size % 16:
        raise UserError(f"--image-size must be a positive multiple of 16, got {size}")
    if name in BENCH_CONFIGS:
        cfg = LPDConfig(**BENCH_CONFIGS[name], grid=(size // 16,) * 2, name=name)
    elif name in NAMED_CONFIGS:
        cfg = LPDConfig.named(name, image_size=size)
    else:
        known = [*EMBEDDED_MODELS, *NAMED_CONFIGS, *BENCH_CONFIGS]
        raise UserError(f"--config: unknown architecture {name!r}; choose one of {', '.join(known)}")
    return BenchModel(name, cfg, list(PUBLISHED_STEPS), PUBLISHED_GUIDANCE, "vq-16")


def default_variants(device: torch.device) -> list[str]:
    """What is worth timing where: int8 is a CPU path, bf16 and compiled steps (CUDA graphs) GPU ones."""
    if device.type == "cuda":
        return ["fp32", "bf16", "bf16-compiled"]
    return ["fp32", "int8"] if device.type == "cpu" else ["fp32"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(_seconds(fn, device) for _ in range(repeats))


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


class _RecompileLimitFilter(logging.Filter):
    """Drops torch's "hit config.recompile_limit" warning and counts it. A compiled int8 step breaks the
    graph at every dynamic int8 Linear, so dynamo meets its recompile limit and runs the rest eagerly:
    expected here (docs/engine.md), and its ten-line warning with a stack trace reads like a failure."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("torch._dynamo hit config."):
            self.dropped += 1
            return False
        return True


@contextmanager
def quiet_recompiles() -> Iterator[_RecompileLimitFilter]:
    """While inside, torch's recompile-limit warnings are counted instead of printed; every other
    record of torch's loggers (real errors included) still reaches the user."""
    logger = logging.getLogger("torch._dynamo.convert_frame")
    flt = _RecompileLimitFilter()
    logger.addFilter(flt)
    try:
        yield flt
    finally:
        logger.removeFilter(flt)


def _set_speedups(rows: list[dict], baseline: str, one_token: int) -> None:
    """Speed-up of every row over the baseline variant at the largest step count and the same batch
    (None until that row is measured)."""
    for r in rows:
        base = next(
            (x for x in rows if x["variant"] == baseline and x["batch"] == r["batch"] and x["steps"] == one_token),
            None,
        )
        r["speedup"] = None if base is None else base["seconds"] / r["seconds"]


def _log_estimate(
    probes: dict[tuple[int, int], float],
    tok_probes: list[float],
    variants: list[str],
    args: argparse.Namespace,
    probe_counts: bool,
) -> float:
    """Log how long the timed work will take, from one call per (batch, steps) and one tokenizer decode
    per batch, with every variant taken as fast as the probed one, and what would make it shorter;
    returns the estimate in seconds."""
    calls = len(variants) * (args.warmup + args.repeats) - (1 if probe_counts else 0)  # the probe was a warm-up
    seconds = calls * sum(probes.values()) + args.repeats * sum(tok_probes)
    compiled = [v for v in variants if v.endswith("compiled")]
    shorter = [
        flag
        for flag, applies in (
            ("--repeats 1", args.repeats > 1),
            ("fewer --steps", len({s for _, s in probes}) > 1),
            ("--throughput-batch 0", len({b for b, _ in probes}) > 1),
            ("fewer --variants", len(variants) > 1),
        )
        if applies
    ]
    log.info(
        "about %s to go: %s of %d warm-up + %d timed calls (%.2g-%.2g s per call here, every variant taken as "
        "fast as the first)%s%s",
        format_duration(seconds),
        plural(len(variants) * len(probes), "row"),
        args.warmup,
        args.repeats,
        min(probes.values()),
        max(probes.values()),
        f", plus compiling {', '.join(compiled)} (minutes on a CPU)" if compiled else "",
        f"; shorter: {', '.join(shorter)}" if shorter else "",
    )
    return seconds


@dataclass(frozen=True)
class BenchPlan:
    """What one run times: the flags given, the rest from the machine and the model's own settings."""

    name: str
    cfg: LPDConfig
    variants: list[str]
    steps: list[int]
    batches: list[int]
    guidance_scale: float
    tokenizer: str  # '' = not timed


def bench_plan(args: argparse.Namespace, device: torch.device) -> BenchPlan:
    """Resolve the flags against ``device`` (CUDA: the published LPD-L; elsewhere the default embedded
    model's architecture) and check them, before anything is built."""
    from ..orders import group_sizes

    cuda = device.type == "cuda"
    spec = bench_model(args.config or (CUDA_CONFIG if cuda else DEFAULT_MODEL), args.image_size)
    variants = args.variants or default_variants(device)
    steps = args.steps or spec.steps
    throughput = THROUGHPUT_BATCH["cuda" if cuda else "cpu"] if args.throughput_batch is None else args.throughput_batch
    if any(v.startswith("int8") for v in variants) and device.type != "cpu":
        raise UserError("the int8 variants run on CPU only (dynamic int8 kernels); choose other --variants")
    if args.repeats < 1 or args.latency_batch < 1 or throughput < 0 or args.warmup < 0:
        raise UserError("need --repeats >= 1, --latency-batch >= 1, --throughput-batch >= 0 and --warmup >= 0")
    for s in steps:
        try:
            group_sizes(spec.cfg.num_tokens, s)
        except ValueError as e:
            raise UserError(f"--steps {s}: {e}") from None
    return BenchPlan(
        name=spec.name,
        cfg=spec.cfg,
        variants=list(variants),
        steps=list(steps),
        batches=[args.latency_batch] + ([throughput] if throughput else []),
        guidance_scale=spec.guidance_scale if args.guidance_scale is None else args.guidance_scale,
        tokenizer=spec.tokenizer if args.tokenizer is None else args.tokenizer,
    )


def run(args: argparse.Namespace) -> int:
    from ..generation import generate
    from ..model import LPD, count_parameters
    from ..orders import group_sizes, locality_aware

    device = check_device_arg(args.device)
    plan = bench_plan(args, device)
    cfg, variants, steps_list, batches = plan.cfg, plan.variants, plan.steps, plan.batches
    guidance, tokenizer_name = plan.guidance_scale, plan.tokenizer
    out = check_output_dir(args.out_dir)

    torch.manual_seed(0)
    with torch.device(device):
        model = LPD(cfg).eval()
    engines = make_engines(model, variants)
    tokenizer = _random_tokenizer(tokenizer_name, device) if tokenizer_name else None
    one_token = max(steps_list)
    head = (
        f"{plan.name} ({count_parameters(cfg) / 1e6:.1f}M params, {cfg.grid[0]}x{cfg.grid[1]} tokens, random weights), "
        f"guidance {guidance:g}, {device}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    rows: list[dict] = []
    result = {
        "model": plan.name,
        "config": cfg.to_dict(),
        "params": count_parameters(cfg),
        "guidance_scale": guidance,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "speedup_baseline": f"{variants[0]}, {one_token} steps, same batch",
        "rows": rows,
        "tokenizer": [],
        "complete": False,
    }
    path = atomic_write_json(result, out / RESULT_FILE)  # from now on bench.json describes this run
    log.info("%s", head)

    def call_for(batch: int, steps: int) -> Callable:
        labels = torch.arange(batch, device=device) % cfg.num_classes
        sizes = group_sizes(cfg.num_tokens, steps)
        orders = locality_aware(cfg.grid, sizes, batch=batch, seed=0).to(device)

        def call(engine, dtype) -> None:
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                generate(
                    engine.model,
                    labels,
                    sizes,
                    orders,
                    guidance_scale=guidance,
                    generator=rng.generator(0, device),
                    engine=engine,
                )

        return call

    keys = [(batch, steps) for batch in batches for steps in steps_list]
    calls = {key: call_for(*key) for key in keys}
    # the estimate: one call per (batch, steps) of the first eager variant (it is that variant's first
    # warm-up call), else of an extra eager engine, so that no compile time is extrapolated
    probe_variant = next((v for v in variants if not v.endswith("compiled")), None)
    if probe_variant is not None:
        probe_engine = engines[probe_variant]
    else:
        from ..engine import Engine

        probe_engine = (Engine(engines[variants[0]][0].model), engines[variants[0]][1])
    with quiet_recompiles() as recompiles:
        probes = {key: _seconds(lambda key=key: calls[key](*probe_engine), device) for key in keys}
        tok_probes = []
        if tokenizer is not None:  # codes of the model's grid in the tokenizer's own codebook
            high = tokenizer.config.codebook_size
            codes = {b: torch.randint(0, high, (b, *cfg.grid), device=device) for b in batches}
            tok_probes = [_seconds(lambda b=b: _decode(tokenizer, codes[b]), device) for b in batches]
        _log_estimate(probes, tok_probes, variants, args, probe_variant is not None)
        for key in keys:
            batch, steps = key
            for v, (engine, dtype) in engines.items():
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                warmup = max(0, args.warmup - 1) if v == probe_variant else args.warmup
                sec = _median_seconds(lambda: calls[key](engine, dtype), device, args.repeats, warmup)
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
                _set_speedups(rows, variants[0], one_token)
                atomic_write_json(result, path)
                log.info("%s batch %d, %d steps: %.3f s", v, batch, steps, sec)
        if tokenizer is not None:
            result["tokenizer"] = [
                {
                    "name": tokenizer_name,
                    "batch": b,
                    "seconds": _median_seconds(lambda b=b: _decode(tokenizer, codes[b]), device, args.repeats, 0),
                }
                for b in batches
            ]
    if recompiles.dropped:
        log.info(
            "torch.compile reached its recompile limit %s (expected for int8-compiled: its int8 layers break "
            "the graph; those steps ran eagerly, docs/engine.md)",
            plural(recompiles.dropped, "time"),
        )
    result["complete"] = True
    atomic_write_json(result, path)

    print(head)
    print(f"{'variant':<15}{'batch':>6}{'steps':>7}{'sec/call':>11}{'img/s':>9}{'speed-up':>10}{'load':>7}")
    for r in rows:
        print(
            f"{r['variant']:<15}{r['batch']:>6}{r['steps']:>7}{r['seconds']:>11.3f}{r['images_per_s']:>9.2f}"
            f"{r['speedup']:>9.1f}x{r['load_avg']:>7.2f}"
        )
    for t in result["tokenizer"]:
        print(f"tokenizer decode ({tokenizer_name}), batch {t['batch']}: {t['seconds']:.3f} s")
    speedup_plot(rows, variants, batches, out / "bench_speedup.png", title=head)
    print(f"wrote {path} and {out / 'bench_speedup.png'}")
    return 0


def _interrupt_hint(args: argparse.Namespace) -> str:
    path = Path(args.out_dir) / RESULT_FILE
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        rows = []
    if not rows:
        return "no row had been measured yet, nothing was saved"
    return f"{plural(len(rows), 'row')} measured before the interruption kept in {path} (no table or plot)"


def _random_tokenizer(name: str, device: torch.device):
    """A tokenizer of the named shape with random weights: a shipped one's config, or a VQConfig name."""
    from ..embedded import tokenizer_weights
    from ..tokenizer import VQConfig, VQTokenizer

    try:
        config = VQConfig.from_file(tokenizer_weights(name)) if name in SHIPPED_TOKENIZERS else VQConfig.named(name)
    except ValueError as e:
        raise UserError(f"--tokenizer: {e}") from None
    with torch.device(device):
        return VQTokenizer(config).eval()


def _decode(tokenizer, codes: torch.Tensor) -> None:
    with torch.inference_mode():
        tokenizer.decode(codes)


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
