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


def measure(model_cfg: LPDConfig, batch: int, steps: int, warmup: int, device: str, checkpointing: bool) -> dict:
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
        "img_per_s": batch / per_step,
        "tokens_per_s": batch * model_cfg.num_tokens / per_step,
        "ms_per_step": 1e3 * per_step,
        "order_draw_share": draw / per_step,
    }


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
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    mcfg = LPDConfig(
        width=args.width,
        depth=args.depth,
        heads=args.heads,
        vocab_size=args.vocab,
        num_classes=1000,
        grid=(args.grid, args.grid),
        name=f"bench-w{args.width}-d{args.depth}",
    )
    rows = [measure(mcfg, b, args.steps, args.warmup, args.device, args.gradient_checkpointing) for b in args.batches]
    print(
        f"{mcfg.name}, {mcfg.num_tokens} tokens, V={mcfg.vocab_size}, device={args.device}, "
        f"threads={torch.get_num_threads()}, schedules drawn per step"
    )
    print(f"{'batch':>6} {'img/s':>9} {'tokens/s':>10} {'ms/step':>9} {'order draw':>11}")
    for r in rows:
        print(
            f"{r['batch']:>6} {r['img_per_s']:>9.2f} {r['tokens_per_s']:>10.0f} {r['ms_per_step']:>9.1f} {r['order_draw_share']:>10.2%}"
        )
    result = {"config": mcfg.to_dict(), "device": args.device, "threads": torch.get_num_threads(), "rows": rows}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
