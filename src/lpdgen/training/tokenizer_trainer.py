"""Training a small VQ tokenizer: reconstruction + codebook + beta * commitment, straight-through.

Resume is exact without saving RNG state: the batch order of epoch e is a permutation drawn from
``seed + e`` and the dead-entry restarts of step s draw from ``seed + s``, so a run restarted from its
checkpoint replays the same batches and restarts as one that never stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .. import rng
from ..data import image_batch
from ..images import float_to_uint8, image_grid
from ..io import atomic_torch_save, atomic_write_json
from ..tokenizer import VectorQuantizer, VQTokenizer
from ..utils import get_logger

log = get_logger(__name__)

CHECKPOINT = "checkpoint.pt"  # training state (weights, optimizer, step) inside out_dir
WEIGHTS = "vq.safetensors"  # final weights (+ vq.json config) inside out_dir


@dataclass
class TokenizerTrainConfig:
    """Hyper-parameters of :func:`train_tokenizer` (defaults: stage 1 of the shipped Fashion-MNIST tokenizer,
    which two short fine-tunes with ``consistency_weight`` then finish; see docs/tokenizer.md)."""

    out_dir: str = "runs/vq_fmnist"
    steps: int = 1600
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # cosine decay from lr to lr * min_lr_ratio
    weight_decay: float = 0.0
    beta: float = 0.25  # commitment weight (LlamaGen / VQ-VAE)
    codebook_weight: float = 1.0
    # Round-trip consistency: pull the re-encoded features of the reconstruction onto the entries the
    # image was coded with, so that encode(decode(codes)) == codes (what a generator's output needs).
    consistency_weight: float = 0.0
    grad_clip: float = 1.0
    dead_code_every: int = 50  # restart entries absent from the usage window every this many steps (0: never)
    dead_code_until: float = 0.8  # ... during this fraction of training, then let the codebook settle
    checkpoint_every: int = 250
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError("steps and batch_size must be positive")
        if not 0.0 <= self.dead_code_until <= 1.0:
            raise ValueError("dead_code_until is a fraction of training in [0, 1]")


def codebook_stats(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Usage (fraction of entries that occur) and perplexity (exp entropy of the code histogram)."""
    counts = torch.bincount(codes.reshape(-1).long().cpu(), minlength=codebook_size).double()
    p = counts / counts.sum().clamp_min(1)
    nz = p[p > 0]
    return {"usage": float((counts > 0).double().mean()), "perplexity": float(torch.exp(-(nz * nz.log()).sum()))}


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) PSNR in dB of images in [-1, 1] (peak-to-peak 2), computed on [0, 1]-scaled values."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def learning_rate(step: int, cfg: TokenizerTrainConfig) -> float:
    """Linear warm-up then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def batch_indices(step: int, num_items: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of training step ``step``: epoch-wise permutations seeded by ``seed + epoch``, last partial batch dropped."""
    per_epoch = num_items // batch_size
    if per_epoch == 0:
        raise ValueError(f"dataset of {num_items} items is smaller than one batch of {batch_size}")
    epoch, i = divmod(step, per_epoch)
    perm = torch.randperm(num_items, generator=rng.generator(seed + epoch))
    return perm[i * batch_size : (i + 1) * batch_size]


@torch.no_grad()
def restart_dead_codes(quantizer: VectorQuantizer, z: torch.Tensor, generator: torch.Generator) -> int:
    """Re-initialise entries absent from the usage window with random current encoder outputs
    (unit vectors, lightly jittered so two restarted entries never coincide). Returns how many."""
    dead = (quantizer.recent_usage_counts() == 0).nonzero().flatten()
    if dead.numel() == 0 or (quantizer.codebook_used < 0).any():  # window not full yet: counts mean nothing
        return 0
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]).cpu()  # (B*h*w, D)
    pick = torch.randint(flat.shape[0], (dead.numel(),), generator=generator)
    noise = 0.01 * torch.randn(dead.numel(), flat.shape[1], generator=generator)
    new = F.normalize(flat[pick] + noise, dim=-1)
    quantizer.embedding.weight[dead.to(quantizer.embedding.weight.device)] = new.to(quantizer.embedding.weight)
    return int(dead.numel())


@torch.no_grad()
def evaluate_tokenizer(
    model: VQTokenizer, dataset: Dataset, batch_size: int = 250, progress: bool = True
) -> dict[str, float]:
    """Over ``dataset``: mean reconstruction PSNR (dB, images in [0, 1]), codebook usage / perplexity, and
    ``round_trip``: the fraction of codes that encode(clamp(decode(codes))) leaves unchanged."""
    was_training = model.training
    model.eval()
    scores, codes, kept = [], [], []
    order = torch.arange(len(dataset))
    for start in tqdm(range(0, len(dataset), batch_size), desc="eval", disable=not progress, leave=False):
        x = image_batch(dataset, order[start : start + batch_size]).to(model.device)
        c = model.encode(x)
        recon = model.decode(c)
        scores.append(psnr(recon, x).cpu())
        kept.append((model.encode(recon.clamp(-1, 1)) == c).flatten().cpu())
        codes.append(c.cpu())
    model.train(was_training)
    stats = codebook_stats(torch.cat(codes), model.config.codebook_size)
    return {
        "psnr": float(torch.cat(scores).mean()),
        **stats,
        "round_trip": float(torch.cat(kept).float().mean()),
        "images": len(dataset),
    }


def train_tokenizer(
    model: VQTokenizer,
    dataset: Dataset,
    cfg: TokenizerTrainConfig,
    eval_dataset: Dataset | None = None,
    progress: bool = True,
    stop_at: int | None = None,
) -> dict[str, float]:
    """Train ``model`` on ``dataset`` (resuming from ``out_dir/checkpoint.pt`` if present), save the final
    weights to ``out_dir/vq.safetensors`` + ``vq.json`` and return metrics (PSNR / usage on
    ``eval_dataset`` when given, plus the training time of this run).

    ``stop_at`` ends this run early at that step, checkpointed, for time-boxed jobs; a later call resumes.
    """
    out = Path(cfg.out_dir)
    device = torch.device(cfg.device)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    start = 0
    if (out / CHECKPOINT).is_file():
        state = torch.load(out / CHECKPOINT, map_location=device, weights_only=True)
        if state["vq_config"] != model.config.to_dict():
            raise ValueError(
                f"{out / CHECKPOINT} was trained with tokenizer config {state['vq_config']}, "
                f"not {model.config.to_dict()}; use another --out-dir"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log.info("resuming from %s at step %d", out / CHECKPOINT, start)

    def save_checkpoint(step: int) -> None:
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "vq_config": model.config.to_dict(),
                "train_config": asdict(cfg),
            },
            out / CHECKPOINT,
        )

    t0 = time.perf_counter()
    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, desc="train-tokenizer", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        x = image_batch(dataset, batch_indices(step, len(dataset), cfg.batch_size, cfg.seed)).to(device)
        recon, q = model(x)
        rec = F.mse_loss(recon, x)
        loss = rec + cfg.codebook_weight * q.codebook_loss + cfg.beta * q.commit_loss
        if cfg.consistency_weight > 0:
            z_again = F.normalize(model.features(recon), dim=1)  # (B, D, h, w) features of the reconstruction
            loss = loss + cfg.consistency_weight * F.mse_loss(z_again, q.z_q.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        restarted = 0
        if (
            cfg.dead_code_every
            and (step + 1) % cfg.dead_code_every == 0
            and step + 1 <= cfg.dead_code_until * cfg.steps
        ):
            restarted = restart_dead_codes(model.quantize, q.z, rng.generator(cfg.seed + step))
        if step % 10 == 0 or restarted:
            usage = float((model.quantize.recent_usage_counts() > 0).float().mean())
            bar.set_postfix(
                rec=f"{rec.item():.4f}", psnr=f"{float(psnr(recon.detach(), x).mean()):.1f}", usage=f"{usage:.2f}"
            )
            if restarted:
                log.info(
                    "step %d: restarted %d unused codebook entries (window usage was %.2f)", step + 1, restarted, usage
                )
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
            save_checkpoint(step + 1)
    bar.close()
    train_seconds = time.perf_counter() - t0
    if end < cfg.steps:
        log.info("stopped at step %d of %d (checkpointed; rerun to resume)", end, cfg.steps)
        return {"steps": end, "train_seconds_this_run": round(train_seconds, 1)}
    model.eval()
    weights = model.save(out / WEIGHTS)
    metrics: dict[str, float] = {"steps": cfg.steps, "train_seconds_this_run": round(train_seconds, 1)}
    if eval_dataset is not None:
        metrics.update(evaluate_tokenizer(model, eval_dataset, progress=progress))
    atomic_write_json(metrics, out / "metrics.json")
    log.info("saved %s; metrics %s", weights, metrics)
    return metrics


@torch.no_grad()
def reconstruction_figure(
    model: VQTokenizer, dataset: Dataset, per_class: int = 4, classes_per_row: int = 5, scale: int = 3
) -> np.ndarray:
    """A picture of originals vs reconstructions: the first ``per_class`` items of every class, as pairs of
    rows (originals above, reconstructions below), upscaled ``scale`` x by pixel repetition. (H, W, C) uint8."""

    labels = np.asarray(dataset.labels)
    classes = np.unique(labels)
    picks = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])
    x = image_batch(dataset, torch.from_numpy(picks)).to(model.device)
    orig, recon = float_to_uint8(x), float_to_uint8(model.decode(model.encode(x)))  # (B, H, W, C)
    per_row = per_class * classes_per_row
    rows = []
    for start in range(0, len(picks), per_row):
        rows += [orig[start : start + per_row], recon[start : start + per_row]]
    tiles = np.concatenate([np.pad(r, ((0, per_row - len(r)), (0, 0), (0, 0), (0, 0))) for r in rows])
    grid = image_grid(tiles, columns=per_row, pad=2, background=128)
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)
