"""Speed of locality-aware order construction: the vectorised ``lpdgen.orders.locality_aware`` against
the straightforward loop reference in ``lpdgen.orders.reference``, per order, in one run; and
the cost of one seed per row (a seeded batch in one call) against one seed for the batch.

Timings on shared CPUs are noisy, so each figure is the best of ``--repeats`` runs of the process's CPU
time (``time.process_time``: time spent descheduled by other work does not count; both sides run on
one thread) and the verdict is the ratio measured within this one run. Also checks that both produce
identical orders for the seed.

    python benchmarks/orders.py                 # table + JSON on stdout
    python benchmarks/orders.py --json out.json # also write the JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from functools import partial
from pathlib import Path

import torch

from lpdgen.orders import group_sizes, locality_aware
from lpdgen.orders.reference import locality_aware_reference

# (grid side, steps, rho): the published 256px / 20-step and 512px / 48-step settings
CASES = ((16, 20, 2.0), (32, 48, 4.0))


def best_time(fn, repeats: int) -> float:
    """Best CPU time of ``repeats`` calls (seconds): the least disturbed by other processes."""
    return min(timeit.repeat(fn, timer=time.process_time, number=1, repeat=repeats))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256, 1024])
    parser.add_argument("--reference-orders", type=int, default=4, help="orders timed with the loop reference")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    for side, steps, rho in CASES:
        sizes = group_sizes(side * side, steps)
        ref_orders = args.reference_orders
        reference = partial(locality_aware_reference, side, side, sizes, rho=rho, batch=ref_orders, seed=0)
        ref = best_time(reference, args.repeats) / ref_orders
        same = torch.equal(locality_aware(side, sizes, rho=rho, batch=ref_orders, seed=0), reference())
        for batch in args.batches:
            fast = best_time(partial(locality_aware, side, sizes, rho=rho, batch=batch, seed=1), args.repeats) / batch
            per_row = (
                best_time(partial(locality_aware, side, sizes, rho=rho, seed=list(range(batch))), args.repeats) / batch
            )
            rows.append(
                {
                    "grid": f"{side}x{side}",
                    "steps": steps,
                    "rho": rho,
                    "batch": batch,
                    "reference_ms_per_order": ref * 1e3,
                    "fast_ms_per_order": fast * 1e3,
                    "speedup": ref / fast,
                    "per_row_seeds_cost": per_row / fast,
                    "identical_to_reference": same,
                }
            )

    print(
        f"{'grid':>6} {'steps':>5} {'rho':>4} {'batch':>6} {'loop ms/order':>14} {'fast ms/order':>14} "
        f"{'speedup':>8} {'per-row seeds':>13} {'identical':>9}"
    )
    for r in rows:
        print(
            f"{r['grid']:>6} {r['steps']:>5} {r['rho']:>4g} {r['batch']:>6} {r['reference_ms_per_order']:>14.3f} "
            f"{r['fast_ms_per_order']:>14.4f} {r['speedup']:>7.0f}x {r['per_row_seeds_cost']:>12.2f}x "
            f"{r['identical_to_reference']!s:>9}"
        )
    result = {"threads": args.threads, "repeats": args.repeats, "rows": rows}
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
