"""A tiny training run on real images, as a script: the subprocess that tests kill -9 and run under
torchrun (tests/test_train.py, tests/test_distributed.py).

The data set is Fashion-MNIST tokenized by a fixed quantizer (the mean of each 4x4 patch in 8 grey
levels: 7x7 = 49 tokens per image), so it is real structured data with no trained tokenizer needed.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from lpdgen.data import FASHION_MNIST_DIR, load_fashion_mnist
from lpdgen.model import LPDConfig
from lpdgen.training.config import TrainConfig
from lpdgen.training.token_datasets import TensorTokens
from lpdgen.training.trainer import Trainer

PATCH = 4
LEVELS = 8


def patch_tokens(count: int, root: str = FASHION_MNIST_DIR) -> TensorTokens:
    """Fashion-MNIST images as 7x7 grids of quantized patch means (codes in [0, LEVELS))."""
    images, labels = load_fashion_mnist(root, "train")
    x = torch.from_numpy(np.array(images[:count])).float()  # (B, 28, 28)
    side = x.shape[1] // PATCH
    means = x.view(-1, side, PATCH, side, PATCH).mean(dim=(2, 4))  # (B, 7, 7)
    codes = (means * LEVELS / 256.0).long().clamp_(0, LEVELS - 1).flatten(1)  # (B, 49)
    return TensorTokens(codes, torch.from_numpy(labels[:count].astype(np.int64)))


def tiny_model(dropout: float = 0.0, label_drop: float = 0.1) -> LPDConfig:
    return LPDConfig(
        width=32,
        depth=2,
        heads=2,
        vocab_size=LEVELS,
        num_classes=10,
        grid=(7, 7),
        dropout=dropout,
        label_drop=label_drop,
        name="tiny",
    )


def assert_same_parameters(
    want: dict[str, torch.Tensor], have: dict[str, torch.Tensor], width: int, tol: float
) -> None:
    """Every parameter within ``tol``, except the key third of each ``attn.qkv.bias``.

    The key bias adds the same q.b to every logit of a row, which softmax ignores: its true gradient is 0
    and what remains is float noise (~1e-10) that Adam's normalisation blows up to +-lr per step,
    differently for any change of summation order (process count, micro-batches). Queries and values
    of the same bias are compared.
    """
    keep = torch.cat([torch.arange(width), torch.arange(2 * width, 3 * width)])
    assert set(want) == set(have)
    for key in want:
        a, b = want[key], have[key]
        if key.endswith("attn.qkv.bias"):
            a, b = a[keep], b[keep]
        err = (a - b).abs().max().item()
        assert err <= tol, f"{key}: max difference {err:.3g} > {tol}"


class SlowTrainer(Trainer):
    """Sleeps after each step so that a test can kill the process between two checkpoints."""

    delay = 0.0

    def train_step(self, step):
        out = super().train_step(step)
        time.sleep(self.delay)
        return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out-dir", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--items", type=int, default=512)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--parallel", default="ddp")
    p.add_argument("--accum-steps", type=int, default=1)
    p.add_argument("--resume", default=None)
    p.add_argument("--delay", type=float, default=0.0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = TrainConfig(
        out_dir=args.out_dir,
        global_batch=args.global_batch,
        steps=args.steps,
        lr_unit="step",
        warmup=3,
        decay_start=args.steps // 2,
        base_lr=0.05,
        checkpoint_every=args.checkpoint_every,
        keep_last=2,
        log_every=1,
        parallel=args.parallel,
        accum_steps=args.accum_steps,
        resume=args.resume,
        device="cpu",
        tensorboard=False,
    )
    SlowTrainer.delay = args.delay
    trainer = SlowTrainer(tiny_model(args.dropout), cfg, patch_tokens(args.items))
    summary = trainer.fit()
    if trainer.dist.is_main:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
