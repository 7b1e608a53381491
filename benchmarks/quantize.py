"""Which Linear layers int8 should keep in fp32: speed and fidelity of each choice, in one run.

For a config (default width 768, depth 12, 20 steps, guidance 4.8, random weights) it quantizes copies
of one fp32 model with different layers kept fp32 (none; the 16384-way head), then times greedy decoding
round-robin at each batch and reports greedy-token agreement with fp32 and the relative error of
teacher-forced logits (cached path). The embedding tables are row lookups and stay fp32 in every variant.

    python benchmarks/quantize.py --threads 1
    python benchmarks/quantize.py --batches 1 8 --repeats 5 --json quantize.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch

from lpdgen import LPD, LPDConfig
from lpdgen.engine import Engine, quantize_model
from lpdgen.generation import decode_logits
from lpdgen.orders import group_sizes, locality_aware

CHOICES = {"all-int8": (), "head-fp32": ("head",)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=4.8)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = LPDConfig(width=args.width, depth=args.depth, heads=args.heads, grid=(16, 16))
    model = LPD(cfg).eval()
    sizes = group_sizes(cfg.num_tokens, args.steps)
    engines = {"fp32": Engine(model)}
    engines.update({name: Engine(quantize_model(copy.deepcopy(model), "int8", skip=skip)) for name, skip in CHOICES.items()})
    result = {"threads": torch.get_num_threads(), "steps": args.steps, "cfg": args.cfg, "config": cfg.to_dict(), "batches": []}
    for batch in args.batches:
        gen = torch.Generator().manual_seed(batch)
        labels = torch.randint(0, cfg.num_classes, (batch,), generator=gen)
        orders = locality_aware(cfg.grid, sizes, batch=batch, seed=0)
        tokens = {name: e.generate(labels, sizes, orders, cfg=args.cfg, top_k=1) for name, e in engines.items()}
        logits = {name: decode_logits(e.model, tokens["fp32"], labels, sizes, orders, engine=e) for name, e in engines.items()}
        times: dict[str, list[float]] = {name: [] for name in engines}
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            for name, e in engines.items():
                t0 = time.perf_counter()
                e.generate(labels, sizes, orders, cfg=args.cfg, top_k=1)
                times[name].append(time.perf_counter() - t0)
        row = {"batch": batch, "load_avg": [load, os.getloadavg()[0]]}
        for name in engines:
            sec = statistics.median(times[name])
            row[name] = {"seconds": sec, "speedup_vs_fp32": statistics.median(times["fp32"]) / sec,
                         "greedy_agreement": (tokens[name] == tokens["fp32"]).float().mean().item(),
                         "logit_rel_error": ((logits[name] - logits["fp32"]).norm() / logits["fp32"].norm()).item()}
            print(f"batch {batch} {name:>10}: {sec:.3f} s, {row[name]['speedup_vs_fp32']:.2f}x fp32, "
                  f"greedy agreement {row[name]['greedy_agreement']:.3f}, logit rel. error {row[name]['logit_rel_error']:.4f}", flush=True)
        result["batches"].append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
