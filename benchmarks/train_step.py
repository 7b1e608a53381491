"""Training throughput of the full step (data, per-sample randomness, forward, backward, clip, AdamW).

    python benchmarks/train_step.py                      # small config, batches 8 and 32, CPU
    python benchmarks/train_step.py --batches 16 64 --width 512 --depth 8 --device cuda --json out.json

Prints a table (img/s, tokens/s, ms/step, and the share of the step spent drawing the per-sample
orders on the host) and the same numbers as JSON. Timings on shared CPUs are noisy: compare rows of
one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from lpdgen import rng
from lpdgen.model import LPDConfig
from lpdgen.training.config import TrainConfig
from lpdgen.training.draws import sample_randomness
from lpdgen.training.token_datasets import TensorTokens
from lpdgen.training.trainer import Trainer


def random_tokens(items: int, num_tokens: int, vocab: int, classes: int, seed: int = 0) -> TensorTokens:
    """Uniform random codes: throughput does not depend on what the tokens are."""
    g = rng.generator(seed)
    return TensorTokens(
        torch.randint(vocab, (items, num_tokens), generator=g), torch.randint(classes, (items,), generator=g)
    )


def measure(
    model_cfg: LPDConfig, batch: int, steps: int, warmup: int, device: str, checkpointing: bool, precision: str = "fp32"
) -> dict:
    data = random_tokens(batch * (steps + warmup), model_cfg.num_tokens, model_cfg.vocab_size, model_cfg.num_classes)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            out_dir=out,
            global_batch=batch,
            steps=steps + warmup,
            lr_unit="step",
            warmup=1,
            decay_start=1,
            device=device,
            tensorboard=False,
            gradient_checkpointing=checkpointing,
            precision=precision,
        )
        trainer = Trainer(model_cfg, cfg, data)
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        for s in range(warmup):
            trainer.train_step(s)
        sync()
        t0 = time.perf_counter()
        for s in range(warmup, warmup + steps):
            trainer.train_step(s)
        sync()
        per_step = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    for s in range(steps):
        sample_randomness(0, s, torch.arange(batch), model_cfg.num_tokens, model_cfg.label_drop)
    draw = (time.perf_counter() - t0) / steps
    return {
        "batch": batch,
        "precision": precision,
        "img_per_s": batch / per_step,
        "tokens_per_s": batch * model_cfg.num_tokens / per_step,
        "ms_per_step": 1e3 * per_step,
        "order_draw_share": draw / per_step,
    }


def train_flops_per_image(model_cfg: LPDConfig) -> float:
    """FLOPs of one image's forward + backward, counted by torch's FlopCounterMode on a real step (matrix
    products and attention; the element-wise work it ignores is small at these widths)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lpdgen.model import LPD
    from lpdgen.orders import group_sizes

    model = LPD(model_cfg)
    n = model_cfg.num_tokens
    tokens = torch.randint(model_cfg.vocab_size, (2, n))
    labels = torch.randint(model_cfg.num_classes, (2,))
    orders = torch.stack([torch.randperm(n) for _ in range(2)])
    with FlopCounterMode(display=False) as counter:
        model(tokens, labels, group_sizes(n, min(n, 20)), orders).backward()
    return counter.get_total_flops() / 2


def gemm_peak(device: str, size: int = 2048, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of a square matrix product in fp32 and bf16: the ceiling the training step is measured against."""
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        a @ b
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out[name] = 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e9
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--grid", type=int, default=16, help="token grid side (16 = 256px with VQ-16)")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "bf16"],
        help="autocast settings to compare (bf16 autocast works on CPU and CUDA)",
    )
    p.add_argument("--repeats", type=int, default=1, help="round-robin repeats of every (batch, precision); medians")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--peak", action="store_true", help="also measure the device's GEMM peak (fp32 and bf16)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    mcfg = LPDConfig(
        width=args.width,
        depth=args.depth,
        heads=args.heads,
        vocab_size=args.vocab,
        num_classes=args.classes,
        grid=(args.grid, args.grid),
        name=f"bench-w{args.width}-d{args.depth}",
    )
    flops = train_flops_per_image(mcfg)
    runs: dict[tuple[int, str], list[dict]] = {}
    for _ in range(args.repeats):  # round robin: slow drifts of a shared machine hit every setting alike
        for b in args.batches:
            for prec in args.precisions:
                r = measure(mcfg, b, args.steps, args.warmup, args.device, args.gradient_checkpointing, prec)
                runs.setdefault((b, prec), []).append(r)
    rows = []
    for rs in runs.values():
        r = sorted(rs, key=lambda x: x["img_per_s"])[len(rs) // 2]
        rows.append({**r, "gflops": r["img_per_s"] * flops / 1e9, "img_per_s_all": [x["img_per_s"] for x in rs]})
    peak = gemm_peak(args.device) if args.peak else {}
    print(
        f"{mcfg.name}, {mcfg.num_tokens} tokens, V={mcfg.vocab_size}, device={args.device}, "
        f"threads={torch.get_num_threads()}, schedules drawn per step, {flops / 1e9:.2f} GFLOP per image (fwd+bwd)"
    )
    print(f"{'batch':>6} {'prec':>5} {'img/s':>9} {'tokens/s':>10} {'ms/step':>9} {'GFLOP/s':>8} {'order draw':>11}")
    for r in rows:
        print(
            f"{r['batch']:>6} {r['precision']:>5} {r['img_per_s']:>9.2f} {r['tokens_per_s']:>10.0f} "
            f"{r['ms_per_step']:>9.1f} {r['gflops']:>8.1f} {r['order_draw_share']:>10.2%}"
        )
    for name, value in peak.items():
        print(f"GEMM peak {name}: {value:.1f} GFLOP/s")
    result = {
        "config": mcfg.to_dict(),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "gflop_per_image": flops / 1e9,
        "gemm_peak_gflops": peak,
        "rows": rows,
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
