"""The decoding engine against its floor and against the decoder it replaced, in one interleaved run.

For one config (default: width 768, depth 12, 111M parameters, 16x16 tokens, VQ-16 vocabulary), 20
steps, guidance 4.8, greedy tokens, random weights (speed does not depend on them), it times per batch:

- ``baseline``: the growing-view decoder of git ref ``--baseline`` (the code before fixed-shape steps,
  loaded from git as a second package, same weights);
- ``fp32``: today's fixed-shape decoder through an :class:`lpdgen.engine.Engine` (cache reused);
- ``floor``: the decode's matrix products alone - every Linear of every step replayed with the same
  weights and row counts (``F.linear``), nothing else (attention, norms, GELU, sampling excluded);
- ``int8``: the same decoder after ``model.quantize("int8")`` (weights packed for oneDNN on CPUs with
  VNNI, :func:`lpdgen.quantize.int8_backend`); ``int8-fbgemm`` (with ``--fbgemm``): packed for fbgemm;
- ``int8-spanS`` (with ``--kv-spans S ...``): int8 with steps attending over spans of S cache slots
  instead of :data:`lpdgen.masks.KV_SPAN` (same tokens, less or more attention work);
- ``compiled`` (with ``--compile``): the fp32 step compiled (inductor on CPU). (A compiled int8 step
  breaks the graph at every dynamic int8 Linear and measured slower than eager int8: docs/engine.md.)

Variants are timed round-robin (repeat r of every variant, then repeat r + 1), so load drift on a
shared machine hits them alike; medians are reported with the load average. ``--profile`` adds, per
variant and batch, where a decode's profiled self CPU time goes (torch profiler): matrix products,
attention, LayerNorm, GELU, cache writes and the rest.

    python benchmarks/engine.py                            # batches 1 and 8, ~3 min on 2 cores
    python benchmarks/engine.py --profile --json docs/engine_bench.json
    python benchmarks/engine.py --batches 1 --compile      # + compiled step (compiles for minutes)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from _common import add_decode_args, random_model, time_round_robin, write_result

from lpdgen import LPD
from lpdgen.engine import Engine
from lpdgen.generation import generate
from lpdgen.masks import KV_SPAN, decode_steps
from lpdgen.model import count_parameters
from lpdgen.orders import locality_aware
from lpdgen.quantize import quantize_model

REPO = Path(__file__).resolve().parents[1]
BASELINE_REF = "fd6f4b1"  # the last commit with the growing-view decoder
# profiled self CPU time by kind of work: op names (or, for attention, a part of them) per category
PROFILE_CATEGORIES = {
    "matmul": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "quantized::linear_dynamic"),
    "attention": ("scaled_dot_product",),
    "layernorm": ("aten::native_layer_norm",),
    "gelu": ("aten::gelu",),
    "cache write": ("aten::index_copy_",),
}


def load_baseline(ref: str) -> ModuleType:
    """``src/lpdgen`` of git ``ref`` imported as the package ``lpdgen_baseline`` (its imports are relative)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "src/lpdgen"], check=True, capture_output=True
    ).stdout
    root = Path(tempfile.mkdtemp(prefix="lpdgen_baseline_"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    pkg = root / "src" / "lpdgen"
    spec = importlib.util.spec_from_file_location(
        "lpdgen_baseline", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["lpdgen_baseline"] = module
    spec.loader.exec_module(module)
    return module


def gemm_replay(model: LPD, sizes: list[int], batch: int) -> Callable[[], None]:
    """A function that runs exactly the Linear products of one decode (rows per step as the decoder
    feeds them: all rows in every layer but the last, query rows only in the last layer and the head)."""
    width = model.cfg.width
    calls = []
    last = model.cfg.depth - 1
    for step in decode_steps(tuple(sizes)):
        rows, queries = step.slot_end - step.slot_start, step.q_end - step.q_start
        for i, blk in enumerate(model.blocks):
            r = queries if i == last else rows
            calls += [
                (blk.attn.qkv, rows, width),
                (blk.attn.proj, r, width),
                (blk.mlp.fc1, r, width),
                (blk.mlp.fc2, r, blk.mlp.fc1.out_features),
            ]
        calls.append((model.head, queries, width))
    inputs = [(torch.randn(batch, r, d), lin.weight, lin.bias) for lin, r, d in calls]

    def run() -> None:
        for x, w, b in inputs:
            F.linear(x, w, b)

    return run


def profile_shares(fn: Callable[[], object]) -> dict[str, float]:
    """Share of the profiled self CPU time of ``fn`` in each of :data:`PROFILE_CATEGORIES` and the rest."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = {
        name: sum(e.self_cpu_time_total for e in events if any(op in e.key for op in ops)) / total
        for name, ops in PROFILE_CATEGORIES.items()
    }
    return {**shares, "other": 1 - sum(shares.values())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_decode_args(p)
    p.add_argument("--baseline", default=BASELINE_REF, help="git ref of the decoder to compare with ('' skips it)")
    p.add_argument("--compile", action="store_true", help="also time the compiled step")
    p.add_argument("--fbgemm", action="store_true", help="also time int8 weights packed for fbgemm")
    p.add_argument("--profile", action="store_true", help="where each decode's time goes (torch profiler)")
    p.add_argument(
        "--kv-spans",
        type=int,
        nargs="*",
        default=[],
        help=f"also time int8 with steps attending over spans of this many cache slots (default {KV_SPAN})",
    )
    args = p.parse_args(argv)
    model, sizes = random_model(args)
    cfg = model.cfg
    int8 = copy.deepcopy(model).quantize("int8")
    baseline = None
    if args.baseline:
        base_module = load_baseline(args.baseline)
        baseline = base_module.LPD(base_module.LPDConfig(**cfg.to_dict())).eval()
        baseline.load_state_dict(model.state_dict())
    engines = {"fp32": Engine(model), "int8": Engine(int8)}
    if args.fbgemm:
        engines["int8-fbgemm"] = Engine(quantize_model(copy.deepcopy(model), "int8", backend="fbgemm"))
    for span in args.kv_spans:
        engines[f"int8-span{span}"] = Engine(int8, kv_span=span)
    if args.compile:
        engines["compiled"] = Engine(model, compile=True)

    print(
        f"width {cfg.width} depth {cfg.depth} ({count_parameters(cfg) / 1e6:.0f}M params), {args.steps} steps, cfg {args.cfg}, "
        f"greedy, {torch.get_num_threads()} threads, torch {torch.__version__}",
        flush=True,
    )
    result = {
        "config": cfg.to_dict(),
        "params": count_parameters(cfg),
        "steps": args.steps,
        "cfg": args.cfg,
        "clock": args.clock,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "baseline": args.baseline,
        "command": " ".join(["python", "benchmarks/engine.py", *(argv if argv is not None else sys.argv[1:])]),
        "rows": [],
    }
    for batch in args.batches:
        labels = torch.arange(batch) % cfg.num_classes
        orders = locality_aware(cfg.grid, sizes, batch=batch, seed=0)
        run = {
            name: (lambda e=e: generate(e.model, labels, sizes, orders, guidance_scale=args.cfg, top_k=1, engine=e))
            for name, e in engines.items()
        }
        if baseline is not None:
            run["baseline"] = lambda: baseline.generate(labels, sizes, orders, cfg=args.cfg, top_k=1)  # its own loop
        replay = gemm_replay(model, sizes, 2 * batch if args.cfg != 1.0 else batch)
        run["floor"] = lambda: torch.inference_mode()(replay)()
        tokens = {name: fn() for name, fn in run.items() if name != "floor"}  # also warms up (compiles)
        sec, load = time_round_robin(run, args.repeats, args.clock)
        row = {"batch": batch, "seconds": sec, "load_avg": load, "fp32_over_floor": sec["fp32"] / sec["floor"]}
        for name in tokens:
            if name.startswith("int8"):
                row[f"{name}_agreement_with_fp32"] = (tokens[name] == tokens["fp32"]).float().mean().item()
        if baseline is not None:
            row["fp32_tokens_equal_baseline"] = bool(torch.equal(tokens["fp32"], tokens["baseline"]))
            row["baseline_over_fp32"] = sec["baseline"] / sec["fp32"]
            for name in sec:
                if name.startswith("int8"):
                    row[f"baseline_over_{name.replace('-', '_')}"] = sec["baseline"] / sec[name]
        if "compiled" in tokens:
            row["compiled_tokens_equal_fp32"] = bool(torch.equal(tokens["compiled"], tokens["fp32"]))
            row["fp32_over_compiled"] = sec["fp32"] / sec["compiled"]
        result["rows"].append(row)
        print(
            f"batch {batch} (load avg {load[0]:.2f} -> {load[1]:.2f}): "
            + ", ".join(f"{k} {v:.3f} s" for k, v in sec.items()),
            flush=True,
        )
        print(
            "  "
            + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
                if k not in ("batch", "seconds", "load_avg")
            ),
            flush=True,
        )
        if args.profile:  # the floor is matrix products by construction
            row["profile"] = {name: profile_shares(fn) for name, fn in run.items() if name != "floor"}
            for name, shares in row["profile"].items():
                print(f"  profile {name}: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()), flush=True)
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
