"""The hyper-parameters of a training run (:class:`TrainConfig`, defaults = the published recipe) and
which of them a resumed run may change. Apart from the loop so that the CLI can build and check a
config without importing the trainer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

LR_REFERENCE_BATCH = 256  # lr = base_lr * global_batch / 256 (the published scaling rule)
LR_UNITS = ("epoch", "step")
PRECISIONS = ("auto", "fp32", "bf16")
ATTENTIONS = ("auto", "flex", "dense")  # how training attends: FlexAttention (fused, compiled) or a dense mask

# TrainConfig fields that may change between a run and its resumption; every other field (and the model
# config, and the dataset size) must match, or the resumed run would not continue the same run.
RESUMABLE_CHANGES = frozenset(
    {
        "out_dir",
        "resume",
        "device",
        "attention",
        "parallel",
        "accum_steps",
        "checkpoint_every",
        "keep_last",
        "log_every",
        "sample_every",
        "sample_count",
        "sample_steps",
        "sample_cfg",
        "tokenizer",
        "init",
        "tensorboard",
    }
)


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run; defaults are the published LPD recipe (docs/training.md)."""

    out_dir: str = "runs/lpd"
    global_batch: int = 2048  # over all processes (LPD-L 2048; XL / XXL 1024)
    epochs: float = 450.0  # training length, unless ``steps`` is set
    steps: int | None = None  # training length in optimizer steps (overrides ``epochs``)
    lr_unit: str = "epoch"  # unit of warmup / decay_start: "epoch" or "step"
    warmup: float = 50.0  # linear warm-up from 0 over this many units
    decay_start: float = 400.0  # constant lr until here, then cosine to min_lr at the end of training
    base_lr: float = 1e-4  # scaled: lr = base_lr * global_batch / 256
    min_lr: float = 1e-5  # absolute, not scaled
    weight_decay: float = 0.02  # not on biases and 1-D parameters (LayerNorms)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 3.0  # max global grad norm (0 disables)
    accum_steps: int = 1  # split each process's batch into this many micro-batches (same step, less memory)
    schedules: str = "auto"  # "auto": orders.all_group_sizes(N); else step counts "8,16,32" or a JSON file
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 elsewhere; "bf16" also works on CPU
    gradient_checkpointing: bool = False
    attention: str = "auto"  # "auto": FlexAttention on CUDA, a dense boolean mask elsewhere (same results)
    parallel: str = "ddp"  # under torchrun: "ddp" (replicate) or "fsdp" (shard)
    checkpoint_every: int = 1000  # steps; a checkpoint is also written at the end
    keep_last: int = 3  # older checkpoints are deleted (0 keeps all)
    log_every: int = 10
    sample_every: int = 0  # steps between sample grids (0: never)
    sample_count: int = 16
    sample_steps: int = 20  # decoding steps of the sample grid (clipped to N)
    sample_cfg: float = 1.0
    tokenizer: str | None = None  # VQ checkpoint to decode sample grids (else: shipped default or code maps)
    tensorboard: bool = True  # write TensorBoard scalars when `tensorboard` is importable
    init: str | None = None  # weights to start from (published .pth or .safetensors)
    resume: str | None = None  # checkpoint path, or "auto" for the latest in out_dir
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        positive = {
            "global_batch": self.global_batch,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "accum_steps": self.accum_steps,
            "sample_count": self.sample_count,
            "sample_steps": self.sample_steps,
        }
        bad = {k: v for k, v in positive.items() if int(v) != v or v < 1}
        if bad:
            raise ValueError(f"these settings must be positive integers: {bad}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.steps is None and not self.epochs > 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.lr_unit not in LR_UNITS:
            raise ValueError(f"lr_unit must be one of {LR_UNITS}, got {self.lr_unit!r}")
        if not 0 <= self.warmup <= self.decay_start:
            raise ValueError(f"need 0 <= warmup ({self.warmup}) <= decay_start ({self.decay_start})")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.base_lr <= 0 or self.min_lr < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("base_lr must be > 0; min_lr, weight_decay and grad_clip >= 0")
        if self.keep_last < 0 or self.sample_every < 0:
            raise ValueError("keep_last and sample_every must be >= 0")

    @property
    def peak_lr(self) -> float:
        return self.base_lr * self.global_batch / LR_REFERENCE_BATCH

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
