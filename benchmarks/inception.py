"""Speed of the evaluation pieces on this machine: Inception features per 1,000 images (by input size
and batch size; preprocessing shown apart) and one 2048-d Frechet distance (scipy sqrtm).

    python benchmarks/inception.py [--num 100] [--threads 2] [--json out.json]

Timings on shared CPUs are noisy: compare rows within one run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lpdgen.evaluation.inception import InceptionFeatures, preprocess
from lpdgen.evaluation.metrics import frechet_distance


def _seconds(fn) -> float:
    """Wall time of one call (each row is long enough that one call is representative)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=100, help="images per configuration")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for size, channels, batch in ((28, 1, 50), (256, 3, 50), (256, 3, 10)):
        images = rng.integers(0, 256, size=(args.num, size, size, channels), dtype=np.uint8)
        net = InceptionFeatures(batch_size=batch)
        net(images[:2])  # warm-up (TorchScript profiling runs)
        total = _seconds(lambda net=net, images=images: net.features([images], progress=False))
        prep = _seconds(
            lambda images=images, batch=batch: [
                preprocess(torch.from_numpy(images[i : i + batch])) for i in range(0, args.num, batch)
            ]
        )
        rows.append(
            {
                "input": f"{size}x{size}x{channels}",
                "batch": batch,
                "s_per_1000": 1000 * total / args.num,
                "preprocess_s_per_1000": 1000 * prep / args.num,
            }
        )
    d = 2048
    a, b = rng.normal(size=(d, 3 * d)), rng.normal(size=(d, 3 * d))
    s1, s2 = a @ a.T / (3 * d), b @ b.T / (3 * d)
    fd_seconds = _seconds(lambda: frechet_distance(np.zeros(d), s1, np.ones(d), s2))

    print(f"Inception (FID network) on {args.threads} thread(s), {args.num} images per row")
    print(f"{'input':<14}{'batch':>6}{'s / 1000 img':>14}{'of which preprocess':>21}")
    for r in rows:
        print(f"{r['input']:<14}{r['batch']:>6}{r['s_per_1000']:>14.1f}{r['preprocess_s_per_1000']:>21.1f}")
    print(f"Frechet distance, 2048-d (scipy sqrtm): {fd_seconds:.1f} s")
    result = {"threads": args.threads, "num": args.num, "rows": rows, "frechet_2048_seconds": fd_seconds}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
