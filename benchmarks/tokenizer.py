"""Tokenizer speed: encode and decode images/s of the shipped Fashion-MNIST tokenizer (32x32 -> 8x8) and
of LlamaGen VQ-16 (random weights: speed does not depend on them) at 256px, plus the token-cache cost per
image (encode of the image and of its flip).

Timings on shared CPUs are noisy: each figure is the best of ``--repeats`` runs, and the cache row is
compared with the encode row of the same run.

    python benchmarks/tokenizer.py                  # table + JSON on stdout
    python benchmarks/tokenizer.py --skip-vq16      # the small tokenizer only (seconds)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lpdgen.tokenizer import VQTokenizer
from lpdgen.training.token_cache import encode_with_flips


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (seconds): the least disturbed by other processes."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.inference_mode()
def measure(name: str, model: VQTokenizer, batch: int, size: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, model.config.image_channels, size, size, generator=g) * 2 - 1
    codes = model.encode(x)  # also warms up
    enc = best_time(lambda: model.encode(x), repeats)
    dec = best_time(lambda: model.decode(codes), repeats)
    cache = best_time(lambda: encode_with_flips(model, x), repeats)
    return {
        "tokenizer": name,
        "image": size,
        "grid": list(codes.shape[1:]),
        "batch": batch,
        "encode_img_s": batch / enc,
        "decode_img_s": batch / dec,
        "cache_img_s": batch / cache,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="Fashion-MNIST batch")
    parser.add_argument("--vq16-batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-vq16", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = [measure("fmnist (shipped)", VQTokenizer.from_pretrained_fmnist(), args.batch, 32, args.repeats)]
    if not args.skip_vq16:
        torch.manual_seed(0)
        rows.append(measure("vq-16 (LlamaGen)", VQTokenizer().eval(), args.vq16_batch, 256, args.repeats))

    print(
        f"{'tokenizer':<18}{'image':>6}{'grid':>7}{'batch':>6}{'encode img/s':>14}{'decode img/s':>14}{'cache img/s':>13}"
    )
    for r in rows:
        grid = f"{r['grid'][0]}x{r['grid'][1]}"
        print(
            f"{r['tokenizer']:<18}{r['image']:>6}{grid:>7}{r['batch']:>6}{r['encode_img_s']:>14.1f}"
            f"{r['decode_img_s']:>14.1f}{r['cache_img_s']:>13.1f}"
        )
    out = {"threads": args.threads, "torch": torch.__version__, "rows": rows}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
