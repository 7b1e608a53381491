"""Which Linear layers int8 should keep in fp32: speed and fidelity of each choice, in one run.

For a config (default width 768, depth 12, 20 steps, guidance 4.8, random weights) it quantizes copies
of one fp32 model with different layers kept fp32 (none; the 16384-way head) and with weights packed
for oneDNN (the default on VNNI CPUs) or fbgemm, then times greedy decoding
round-robin at each batch and reports greedy-token agreement with fp32 and the relative error of
teacher-forced logits (cached path). The embedding tables are row lookups and stay fp32 in every variant.

    python benchmarks/quantize.py --threads 1
    python benchmarks/quantize.py --batches 1 8 --repeats 5 --json quantize.json
    python benchmarks/quantize.py --mlp-rows 4 50 400 1280 --threads 1   # one MLP: fp32 / bf16 / int8 per library

``--mlp-rows`` times only one ``width -> 4 width -> width`` MLP at those row counts (a batch-1 guided
step feeds ~50 rows, a batch-8 one ~400): fp32, bf16 weights and activations, and int8 packed for each
quantized-kernel library, which is how the default library was chosen.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch
from _common import add_decode_args, random_model, time_round_robin, write_result

from lpdgen.engine import Engine
from lpdgen.generation import decode_logits, generate
from lpdgen.orders import locality_aware
from lpdgen.quantize import quantize_model

# name: (Linear layers kept fp32, int8 kernel library; None = lpdgen.quantize.int8_backend())
CHOICES = {"all-int8": ((), None), "head-fp32": (("head",), None), "all-int8-fbgemm": ((), "fbgemm")}


def time_mlp(width: int, rows: list[int], repeats: int, clock: str = "wall") -> dict[int, dict[str, float]]:
    """Median seconds of 10 calls of one MLP per variant and row count, round-robin."""
    from torch import nn

    mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.Linear(4 * width, width)).eval()
    variants = {"fp32": (mlp, torch.float32), "bf16": (copy.deepcopy(mlp).to(torch.bfloat16), torch.bfloat16)}
    for backend in ("fbgemm", "onednn"):
        if backend in torch.backends.quantized.supported_engines:
            variants[f"int8-{backend}"] = (_quantize_mlp(copy.deepcopy(mlp), backend), torch.float32)
    result = {}
    for r in rows:
        x = torch.randn(r, width)

        def run(m: nn.Module, dtype: torch.dtype, x: torch.Tensor = x) -> None:
            xd = x.to(dtype)
            for _ in range(10):
                m(xd)

        with torch.inference_mode():
            fns = {name: (lambda m=m, d=d: run(m, d)) for name, (m, d) in variants.items()}
            for fn in fns.values():
                fn()  # warm-up
            sec, load = time_round_robin(fns, repeats, clock)
        result[r] = {"seconds": sec, "load_avg": load}
        print(
            f"{r:>5} rows (load {load[0]:.1f}): " + ", ".join(f"{k} {sec['fp32'] / v:.2f}x" for k, v in sec.items()),
            flush=True,
        )
    return result


def _quantize_mlp(mlp, backend: str):
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    previous, torch.backends.quantized.engine = torch.backends.quantized.engine, backend
    try:
        return quantize_dynamic(mlp, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    finally:
        torch.backends.quantized.engine = previous


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_decode_args(p)
    p.add_argument("--mlp-rows", type=int, nargs="*", default=[], help="time one MLP at these row counts instead")
    args = p.parse_args(argv)
    if args.mlp_rows:
        if args.threads:
            torch.set_num_threads(args.threads)
        write_result(
            args.json,
            {
                "threads": torch.get_num_threads(),
                "width": args.width,
                "mlp": time_mlp(args.width, args.mlp_rows, args.repeats, args.clock),
            },
        )
        return 0
    model, sizes = random_model(args)
    cfg = model.cfg
    engines = {"fp32": Engine(model)}
    engines.update(
        {
            name: Engine(quantize_model(copy.deepcopy(model), "int8", skip=skip, backend=backend))
            for name, (skip, backend) in CHOICES.items()
        }
    )
    result = {
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "cfg": args.cfg,
        "config": cfg.to_dict(),
        "batches": [],
    }
    for batch in args.batches:
        gen = torch.Generator().manual_seed(batch)
        labels = torch.randint(0, cfg.num_classes, (batch,), generator=gen)
        orders = locality_aware(cfg.grid, sizes, batch=batch, seed=0)
        tokens = {
            name: generate(e.model, labels, sizes, orders, guidance_scale=args.cfg, top_k=1, engine=e)
            for name, e in engines.items()
        }
        logits = {
            name: decode_logits(e.model, tokens["fp32"], labels, sizes, orders, engine=e) for name, e in engines.items()
        }
        sec, load = time_round_robin(
            {
                name: (lambda e=e: generate(e.model, labels, sizes, orders, guidance_scale=args.cfg, top_k=1, engine=e))
                for name, e in engines.items()
            },
            args.repeats,
            args.clock,
        )
        row = {"batch": batch, "load_avg": load}
        for name in engines:
            row[name] = {
                "seconds": sec[name],
                "speedup_vs_fp32": sec["fp32"] / sec[name],
                "greedy_agreement": (tokens[name] == tokens["fp32"]).float().mean().item(),
                "logit_rel_error": ((logits[name] - logits["fp32"]).norm() / logits["fp32"].norm()).item(),
            }
            print(
                f"batch {batch} {name:>15}: {sec[name]:.3f} s, {row[name]['speedup_vs_fp32']:.2f}x fp32, "
                f"greedy agreement {row[name]['greedy_agreement']:.3f}, logit rel. error {row[name]['logit_rel_error']:.4f}",
                flush=True,
            )
        result["batches"].append(row)
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
