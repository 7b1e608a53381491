"""Training LPD with the published recipe (random orders and group-size schedules, AdamW, warm-up + cosine):
the loop, for one process, DDP and FSDP. Its pieces live beside it: :mod:`.config` (the hyper-parameters),
:mod:`.schedule` (learning rate, parameter groups, group-size schedules), :mod:`.draws` (every random
draw of a step) and :mod:`.checkpoints` (the files).

Why the randomness is organised the way it is: every per-iteration draw is a pure function of
``(seed, step, ...)`` rather than the state of a long-lived generator.

- the data order of epoch e is ``randperm`` seeded by ``(seed, e)``; step s reads the s-th global batch
  of it and rank r its r-th contiguous slice (a deterministic ``DistributedSampler``);
- the group-size list of step s is drawn from ``(seed, step)``, identical on every rank;
- sample j of the global batch of step s draws its order and label drop from ``(seed, step, j)``.

So the global batch of a step - tokens, orders, null-class flags, schedule - is the same whatever the
number of processes (a 2-process run takes the same optimizer steps as a 1-process run with the same
global batch), and resuming needs no generator state beyond torch's global stream, which only dropout
consumes (it is checkpointed per rank). The loop lives in :class:`Trainer`; the CLI is a thin wrapper.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    init_distributed,
    wrap_model,
)
from ..images import save_png
from ..io import atomic_torch_save, atomic_write
from ..model import LPD, Block, LPDConfig
from ..rng import derive_seed
from ..runs import (
    CHECKPOINT_FORMAT,
    FINAL_WEIGHTS,
    LOG_FILE,
    checkpoint_path,
    list_checkpoints,
    load_training_checkpoint,
)
from ..utils import format_duration, get_logger
from .checkpoints import config_differences
from .config import RESUMABLE_CHANGES, TrainConfig
from .draws import batch_position, draw_schedule, load_batch, rank_batch, sample_randomness
from .previews import sample_grid
from .schedule import learning_rate, param_groups, resolve_schedules

TIMING_STEPS = 5  # steps timed (after the first, which pays one-off costs) for the time-per-step estimate

log = get_logger(__name__)

# ----------------------------------------------------------------------------------------------------
# the engine
# ----------------------------------------------------------------------------------------------------


class Trainer:
    """Owns the model, optimizer, data order and checkpoints of one run; :meth:`fit` trains.

    Every check of the inputs (dataset against the model, schedules against the grid, batch against
    the process count, resume checkpoint against the config) happens in the constructor, before any
    training work.
    """

    def __init__(
        self,
        model_cfg: LPDConfig,
        cfg: TrainConfig,
        dataset: Dataset,
        dist_info: DistInfo | None = None,
        tokenizer=None,
    ):
        self.cfg = cfg
        self.model_cfg = model_cfg
        self.dataset = dataset
        self.dist = dist_info or init_distributed(cfg.device)
        self.device = self.dist.device
        self.tokenizer = tokenizer
        self.out_dir = Path(cfg.out_dir)
        if cfg.global_batch % self.dist.world_size:
            raise ValueError(
                f"global batch {cfg.global_batch} is not divisible by the {self.dist.world_size} processes"
            )
        self.local_batch = cfg.global_batch // self.dist.world_size
        if self.local_batch % cfg.accum_steps:
            raise ValueError(
                f"the per-process batch {self.local_batch} is not divisible by accum_steps {cfg.accum_steps}"
            )
        self.schedules = resolve_schedules(cfg.schedules, model_cfg.num_tokens)
        self._check_dataset()
        self.steps_per_epoch = len(dataset) // cfg.global_batch
        self.total_steps = cfg.steps if cfg.steps is not None else max(1, round(cfg.epochs * self.steps_per_epoch))
        self.amp = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        if self.amp and self.device.type not in ("cuda", "cpu"):
            raise ValueError(f"bf16 autocast is for CUDA and CPU only, not {self.device.type}; use --precision fp32")

        resume_path = self._resume_path()
        self._resume = load_training_checkpoint(resume_path) if resume_path else None
        if self._resume is not None:
            self._check_resume(resume_path)

        # nn.init and nn.Dropout draw from torch's global stream, so the trainer - which owns the process -
        # seeds it: identically on every rank for the initial weights, then per rank for dropout (whose
        # state every checkpoint stores). Everything else draws from explicit generators.
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        self.model = self._build_model().to(self.device)
        self.model.gradient_checkpointing = cfg.gradient_checkpointing
        self.model.train()
        torch.manual_seed(derive_seed(cfg.seed, "dropout", self.dist.rank))
        # CUDA: FlexAttention skips the fully masked blocks of the group-causal mask (same results); "dense"
        # avoids its compile step (SDPA with a boolean mask), e.g. where torch.compile is unavailable
        if cfg.attention == "flex" and self.device.type != "cuda":
            raise ValueError("attention 'flex' needs CUDA (eager FlexAttention is a slow reference); use 'dense'")
        self.model.use_flex_attention = cfg.attention == "flex" or (
            cfg.attention == "auto" and self.device.type == "cuda"
        )
        self.objective = wrap_model(self.model, self.dist, cfg.parallel, shard=Block)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.objective, cfg.weight_decay), lr=cfg.peak_lr, betas=(cfg.beta1, cfg.beta2)
        )
        self.step = 0
        if self._resume is not None:
            self._load_state(self._resume)
            if self.dist.is_main:
                log.info("resumed from %s at step %d", resume_path, self.step)
            self._resume = None
        self._tb = None

    # --- set-up checks --------------------------------------------------------------------------------

    def _check_dataset(self) -> None:
        n = len(self.dataset)
        if n < self.cfg.global_batch:
            raise ValueError(f"the dataset has {n} items, fewer than one global batch of {self.cfg.global_batch}")
        codes, labels = load_batch(self.dataset, torch.arange(min(n, 8)))
        c = self.model_cfg
        if codes.shape[1] != c.num_tokens:
            raise ValueError(
                f"dataset items have {codes.shape[1]} tokens but the model's grid {c.grid} has {c.num_tokens}"
            )
        if int(codes.min()) < 0 or int(codes.max()) >= c.vocab_size:
            raise ValueError(
                f"dataset codes span [{int(codes.min())}, {int(codes.max())}], outside the model vocabulary of {c.vocab_size}"
            )
        all_labels = torch.as_tensor(np.asarray(self.dataset.labels)) if hasattr(self.dataset, "labels") else labels
        if int(all_labels.min()) < 0 or int(all_labels.max()) >= c.num_classes:
            raise ValueError(
                f"dataset labels span [{int(all_labels.min())}, {int(all_labels.max())}], "
                f"outside the model's {c.num_classes} classes"
            )

    def _resume_path(self) -> Path | None:
        if self.cfg.resume is None:
            return None
        if self.cfg.resume == "auto":
            found = list_checkpoints(self.out_dir)
            return found[-1] if found else None
        return Path(self.cfg.resume)

    def _check_resume(self, path: Path) -> None:
        ckpt = self._resume
        diffs = config_differences(ckpt["model_config"], self.model_cfg.to_dict())
        diffs += config_differences(ckpt["train_config"], self.cfg.to_dict(), ignore=RESUMABLE_CHANGES)
        if ckpt["dataset_size"] != len(self.dataset):
            diffs.append(f"dataset size: {ckpt['dataset_size']} -> {len(self.dataset)}")
        if diffs:
            raise ValueError(f"cannot resume from {path}: it belongs to a different run:\n  " + "\n  ".join(diffs))

    def _build_model(self) -> LPD:
        if self.cfg.init is None or self._resume is not None:  # a resumed run's weights come from its checkpoint
            return LPD(self.model_cfg)
        model = LPD.from_checkpoint(self.cfg.init, config=self.model_cfg)
        if self.dist.is_main:
            log.info("initialised from %s", self.cfg.init)
        return model

    # --- state ----------------------------------------------------------------------------------------

    def _state_dicts(self) -> tuple[dict, dict]:
        """Full (unsharded) model and optimizer state dicts, keyed by parameter name (every rank must call)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=self.dist.enabled and self.cfg.parallel == "fsdp")
        msd, osd = get_state_dict(self.objective, self.optimizer, options=options)  # names without wrapper prefixes
        return {k: v.detach().cpu() for k, v in msd.items()}, osd

    def _rng_state(self) -> dict:
        state = {"torch_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_checkpoint(self) -> Path | None:
        """Write ``ckpt_<step>.pt`` atomically on the main rank and apply keep-last-k. Every rank calls."""
        msd, osd = self._state_dicts()
        rng = all_gather_objects(self._rng_state())  # dropout streams differ per rank
        path = checkpoint_path(self.out_dir, self.step)
        if self.dist.is_main:
            epoch, index = batch_position(self.step, len(self.dataset), self.cfg.global_batch)
            atomic_torch_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "model": msd,
                    "optimizer": osd,
                    "step": self.step,
                    "epoch": epoch,  # data-loader position of the next step: epoch and batch index in it
                    "batch_in_epoch": index,
                    "lr_position": self._lr_position(self.step),
                    "rng": rng,
                    "world_size": self.dist.world_size,
                    "model_config": self.model_cfg.to_dict(),
                    "train_config": self.cfg.to_dict(),
                    "dataset_size": len(self.dataset),
                },
                path,
            )
            self._prune_checkpoints()
        barrier()
        return path if self.dist.is_main else None

    def _prune_checkpoints(self) -> None:
        if self.cfg.keep_last:
            for old in list_checkpoints(self.out_dir)[: -self.cfg.keep_last]:
                old.unlink(missing_ok=True)

    def _load_state(self, ckpt: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(
            self.objective,
            self.optimizer,
            model_state_dict=ckpt["model"],
            optim_state_dict=ckpt["optimizer"],
            options=StateDictOptions(full_state_dict=True),
        )
        self.step = int(ckpt["step"])
        rng = ckpt["rng"]
        if len(rng) == self.dist.world_size:
            mine = rng[self.dist.rank]
            torch.set_rng_state(mine["torch_cpu"])
            if "torch_cuda" in mine and self.device.type == "cuda":
                torch.cuda.set_rng_state(mine["torch_cuda"], self.device)
        elif self.dist.is_main:
            log.warning(
                "checkpoint was written by %d processes, resuming on %d: dropout draws will differ "
                "from an uninterrupted run (data, orders and schedules do not)",
                len(rng),
                self.dist.world_size,
            )
        self._truncate_log(self.step)

    def _truncate_log(self, step: int) -> None:
        """Drop log lines of steps after ``step`` (written after the checkpoint by the interrupted run)."""
        path = self.out_dir / LOG_FILE
        if not self.dist.is_main or not path.is_file():
            return
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(f"{line}\n" for line in kept)))

    # --- training -------------------------------------------------------------------------------------

    def _lr_position(self, step: int) -> float:
        return step / self.steps_per_epoch if self.cfg.lr_unit == "epoch" else float(step)

    def lr_at(self, step: int) -> float:
        c = self.cfg
        end = self._lr_position(self.total_steps)
        return learning_rate(
            self._lr_position(step),
            peak=c.peak_lr,
            min_lr=c.min_lr,
            warmup=c.warmup,
            decay_start=min(c.decay_start, end),
            end=end,
        )

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on global batch ``step``; returns (local loss, grad norm) as tensors (no sync)."""
        c = self.cfg
        indices, positions = rank_batch(
            step, len(self.dataset), c.global_batch, self.dist.rank, self.dist.world_size, c.seed
        )
        epoch, _ = batch_position(step, len(self.dataset), c.global_batch)
        if hasattr(self.dataset, "set_epoch"):  # e.g. the flip choice of a token cache
            self.dataset.set_epoch(epoch)
        tokens, labels = load_batch(self.dataset, indices)
        orders, null = sample_randomness(c.seed, step, positions, self.model_cfg.num_tokens, self.model_cfg.label_drop)
        sizes = draw_schedule(self.schedules, c.seed, step)
        to = dict(device=self.device, non_blocking=True)
        tokens, labels, orders, null = tokens.to(**to), labels.to(**to), orders.to(**to), null.to(**to)

        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=self.device)
        micro = self.local_batch // c.accum_steps
        for i in range(c.accum_steps):  # equal, contiguous micro-batches (views, no copies)
            rows = slice(i * micro, (i + 1) * micro)
            with self._gradient_sync(i == c.accum_steps - 1):
                with self._autocast():
                    part = (
                        self.objective(tokens[rows], labels[rows], sizes, orders[rows], null=null[rows]) / c.accum_steps
                    )
                part.backward()
            loss += part.detach()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if c.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        self.optimizer.step()
        if hasattr(norm, "full_tensor"):  # FSDP2 returns a DTensor
            norm = norm.full_tensor()
        return loss.detach(), norm.detach()

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def _gradient_sync(self, enabled: bool):
        """Context of one micro-batch's backward: gradients are reduced across processes only after the
        last micro-batch of a step (DDP ``no_sync`` / FSDP2 ``set_requires_gradient_sync``)."""
        if not self.dist.enabled:
            return nullcontext()
        if hasattr(self.objective, "no_sync"):  # DDP
            return nullcontext() if enabled else self.objective.no_sync()
        self.objective.set_requires_gradient_sync(enabled)  # FSDP2
        return nullcontext()

    def fit(self) -> dict:
        """Train until ``total_steps``; returns a summary (final loss, throughput, paths)."""
        c = self.cfg
        main = self.dist.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._open_tensorboard()
            log.info(
                "training %s (%d params) for %d steps (%d per epoch), global batch %d on %d process(es), "
                "peak lr %.3g, %d schedules",
                self.model_cfg.name,
                sum(p.numel() for p in self.model.parameters()),
                self.total_steps,
                self.steps_per_epoch,
                c.global_batch,
                self.dist.world_size,
                c.peak_lr,
                len(self.schedules),
            )
            log.info("%s", self.schedule_summary())
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not main, desc="train", dynamic_ncols=True)
        loss_sum = torch.zeros((), device=self.device)
        norm_sum = torch.zeros((), device=self.device)
        window, t0, last = 0, time.perf_counter(), {}
        timing_from, timing_start = self.step + 1, 0.0
        with bar, _deferred_interrupt(enabled=not self.dist.enabled) as interrupted:  # bar closed on Ctrl-C too
            while self.step < self.total_steps:
                if interrupted():  # between steps: the checkpoint is a consistent state
                    raise TrainingInterrupted(self.save_checkpoint(), self.step)
                if self.step == timing_from:  # the first step pays one-off costs: time the next ones
                    timing_start = time.perf_counter()
                elif main and self.step == timing_from + TIMING_STEPS:
                    self._log_time_estimate((time.perf_counter() - timing_start) / TIMING_STEPS)
                loss, norm = self.train_step(self.step)
                loss_sum += loss
                norm_sum += norm
                window += 1
                self.step += 1
                at_end = self.step == self.total_steps
                if self.step % c.log_every == 0 or at_end:
                    elapsed = time.perf_counter() - t0
                    mean_loss = float(all_reduce_mean(loss_sum / window))
                    images = window * c.global_batch
                    last = {
                        "step": self.step,
                        "epoch": self.step / self.steps_per_epoch,
                        "loss": mean_loss,
                        "lr": self.lr_at(self.step - 1),
                        "grad_norm": float(norm_sum / window),
                        "img_per_s": images / elapsed,
                        "tokens_per_s": images * self.model_cfg.num_tokens / elapsed,
                    }
                    if main:
                        self._write_log(last)
                        bar.set_postfix(
                            loss=f"{mean_loss:.4f}",
                            lr=f"{last['lr']:.2e}",
                            img_s=f"{last['img_per_s']:.1f}",
                            tok_s=f"{last['tokens_per_s']:.0f}",
                        )
                    loss_sum.zero_()
                    norm_sum.zero_()
                    window = 0
                if c.sample_every and (self.step % c.sample_every == 0 or at_end):
                    self.write_samples()
                if self.step % c.checkpoint_every == 0 or at_end:
                    self.save_checkpoint()
                if window == 0:  # throughput windows exclude logging, sampling and checkpoint time
                    t0 = time.perf_counter()
                bar.update(1)
        weights = self.export()
        if self._tb is not None:
            self._tb.close()
        return {**last, "weights": str(weights) if weights else None, "total_steps": self.total_steps}

    def schedule_summary(self) -> str:
        """One line stating the learning-rate schedule in steps (and epochs), so a user sees at start
        whether e.g. a 50-epoch warm-up swallows a short run."""
        c = self.cfg
        per_unit = self.steps_per_epoch if c.lr_unit == "epoch" else 1
        warm = min(self.total_steps, round(c.warmup * per_unit))
        decay = min(self.total_steps, round(c.decay_start * per_unit))
        unit = "epochs" if c.lr_unit == "epoch" else "steps"
        text = (
            f"lr schedule: linear warm-up to {c.peak_lr:.3g} over {warm} steps ({c.warmup:g} {unit}), constant "
            f"until step {decay}, cosine to {c.min_lr:.3g} at step {self.total_steps} "
            f"({self.total_steps / max(1, self.steps_per_epoch):.3g} epochs)"
        )
        if round(c.warmup * per_unit) >= self.total_steps:
            text += "; the run ends inside the warm-up: shorten --warmup or train longer"
        return text

    def _log_time_estimate(self, seconds_per_step: float) -> None:
        remaining = (self.total_steps - self.step) * seconds_per_step
        log.info(
            "%.3g s per step (measured over %d steps); the remaining %d steps take about %s",
            seconds_per_step,
            TIMING_STEPS,
            self.total_steps - self.step,
            format_duration(remaining),
        )

    # --- outputs --------------------------------------------------------------------------------------

    def _open_tensorboard(self) -> None:
        if not self.cfg.tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed; logging to %s only", self.out_dir / LOG_FILE)
            return
        self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))

    def _write_log(self, record: dict) -> None:
        with open(self.out_dir / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key in ("loss", "lr", "grad_norm", "img_per_s", "tokens_per_s"):
                self._tb.add_scalar(f"train/{key}", record[key], record["step"])

    def _eval_model(self) -> LPD | None:
        """The full model on the main rank (gathered from the shards under FSDP; every rank calls)."""
        if not (self.dist.enabled and self.cfg.parallel == "fsdp"):
            return self.model if self.dist.is_main else None
        msd, _ = self._state_dicts()
        if not self.dist.is_main:
            return None
        model = LPD(self.model_cfg)
        model.load_state_dict(msd, strict=True)
        return model.to(self.device)

    def write_samples(self) -> Path | None:
        """Write ``samples/step_<step>.png`` (main rank)."""
        model = self._eval_model()
        path = None
        if model is not None:
            c = self.cfg
            grid = sample_grid(
                model,
                count=c.sample_count,
                steps=c.sample_steps,
                guidance_scale=c.sample_cfg,
                seed=c.seed,
                tokenizer=self.tokenizer,
            )
            path = save_png(grid, self.out_dir / "samples" / f"step_{self.step:08d}.png")
        barrier()
        return path

    def export(self) -> Path | None:
        """Final weights as ``lpd.safetensors`` + ``lpd.json`` (loadable by ``LPD.from_checkpoint``), which
        also records the tokenizer and the preview grids' sampling settings: ``lpdgen sample --model
        <out_dir>`` decodes and samples with them (:mod:`lpdgen.runs`)."""
        model = self._eval_model()
        path = None
        if model is not None:
            sampling = {
                "num_inference_steps": min(self.cfg.sample_steps, self.model_cfg.num_tokens),
                "guidance_scale": self.cfg.sample_cfg,
            }
            path = model.save(self.out_dir / FINAL_WEIGHTS, tokenizer=self.cfg.tokenizer, sampling=sampling)
        barrier()
        return path


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training between two steps, after writing ``checkpoint`` at ``step``."""

    def __init__(self, checkpoint: Path | None, step: int):
        super().__init__(f"interrupted at step {step}; checkpoint {checkpoint}")
        self.checkpoint, self.step = checkpoint, step


@contextmanager
def _deferred_interrupt(enabled: bool = True) -> Iterator:
    """Turn the first Ctrl-C into a flag read between steps (a step cut in half, e.g. inside the
    optimizer update, is no state to save); a second Ctrl-C interrupts at once. Yields ``interrupted()``.
    Off under torchrun (every rank must agree to stop) and outside the main thread."""
    hits = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame) -> None:
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt
        log.warning("Ctrl-C: stopping after this step and saving a checkpoint (press again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hits)
    finally:
        signal.signal(signal.SIGINT, previous)


def train(model_cfg: LPDConfig, cfg: TrainConfig, dataset: Dataset, tokenizer=None) -> dict:
    """Train LPD on a token dataset (items ``(codes (N,), label)``) as one process or under torchrun.

    Args:
        model_cfg: network size; ``dropout`` and ``label_drop`` are the training regularisers.
        cfg: the recipe, output directory and resume settings.
        dataset: token dataset; a vectorised ``batch(indices)`` and a ``set_epoch(e)`` are used when present.
        tokenizer: optional VQ tokenizer to decode sample grids.

    Returns:
        Summary of the last logged window (loss, lr, img/s, tokens/s) and the exported weights' path.
    """
    return Trainer(model_cfg, cfg, dataset, tokenizer=tokenizer).fit()
