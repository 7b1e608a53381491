"""Class-conditional editing of real Fashion-MNIST test images: regenerate the lower half of each image
with another class label and ask the shipped classifier which class the result shows.

    python benchmarks/editing.py                      # 1000 test images, the embedded model's defaults
    python benchmarks/editing.py --num 200 --json runs/editing.json

Image i of the test split keeps its upper half (token rows 0-3 of 8) and gets target class
``(label + 1 + i % 9) % 10``, so every (original, target) pair occurs equally often; seeds are
``lpdgen.rng.image_seed(seed, i)``. Reported: the fraction of edits classified as the target class and
as the original class, for edits with the target label, and as a control the same edit with the
original label; plus the time per edit on this machine's CPU (batched, and one image at a time,
medians of ``--repeats`` interleaved runs). Results go to ``--json``; the table is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpdgen.data import FashionMNIST
from lpdgen.evaluation.classifier import FMNISTClassifier
from lpdgen.io import atomic_write_json
from lpdgen.pipeline import LPDPipeline
from lpdgen.rng import image_seeds


def lower_half(pipe: LPDPipeline) -> np.ndarray:
    """(H, W) pixel mask of the lower half (whole token rows)."""
    height, width = pipe.image_size
    mask = np.zeros((height, width), dtype=bool)
    mask[height // 2 :] = True
    return mask


def edit_all(pipe: LPDPipeline, images: np.ndarray, labels: np.ndarray, seed: int, batch: int, desc: str) -> np.ndarray:
    """Lower-half edits of ``images`` to ``labels``, (B, H, W, C) uint8."""
    mask, out = lower_half(pipe), []
    for s in tqdm(range(0, len(images), batch), desc=desc, unit="batch"):
        idx = range(s, min(len(images), s + batch))
        out.append(
            pipe.inpaint(
                images[s : idx.stop],
                mask,
                labels[s : idx.stop].tolist(),
                seeds=image_seeds(seed, idx),
                output_type="np",
            ).images
        )
    return np.concatenate(out)


def time_edits(pipe: LPDPipeline, images: np.ndarray, labels: np.ndarray, batch: int, repeats: int) -> dict:
    """Median seconds per edited image, batched (``batch`` images per call) and one image per call; the
    two are interleaved so that a machine busy with other work slows both alike."""
    mask = lower_half(pipe)
    runs = {"batched": [], "single": []}
    for r in tqdm(range(repeats), desc="timing", unit="repeat"):
        t0 = time.perf_counter()
        pipe.inpaint(images[:batch], mask, labels[:batch].tolist(), seeds=list(range(batch)), output_type="np")
        runs["batched"].append((time.perf_counter() - t0) / batch)
        t0 = time.perf_counter()
        pipe.inpaint(images[:1], mask, labels[:1].tolist(), seeds=[r], output_type="np")
        runs["single"].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in runs.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default="fmnist-64", help="embedded model name or pretrained folder (docs figures: fmnist-64)"
    )
    p.add_argument("--num", type=int, default=1000, help="test images to edit")
    p.add_argument("--steps", type=int, default=None, help="decoding steps for the lower half (default: the model's)")
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5, help="timing repeats (interleaved batched / single)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default="runs/editing.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    pipe = LPDPipeline.from_pretrained(args.model)
    overrides = {k: v for k, v in (("num_inference_steps", args.steps), ("guidance_scale", args.cfg)) if v is not None}
    pipe.sampling = dataclasses.replace(pipe.sampling, **overrides)  # every edit below uses these
    data = FashionMNIST(split="test")
    images = data.images[: args.num].numpy()  # (B, 32, 32) uint8, padded as the tokenizer expects
    original = np.asarray(data.labels[: args.num])
    classes = pipe.model.cfg.num_classes
    target = (original + 1 + np.arange(len(original)) % (classes - 1)) % classes
    classifier = FMNISTClassifier.from_checkpoint()

    edited = edit_all(pipe, images, target, args.seed, args.batch, "edit to target")
    control = edit_all(pipe, images, original, args.seed, args.batch, "edit to original")
    pred, pred_control = (classifier.logits(x).argmax(1).numpy() for x in (edited, control))
    per_target = {pipe.class_names[c]: float((pred[target == c] == c).mean()) for c in range(classes)}
    timing = time_edits(pipe, images, target, min(args.batch, args.num), args.repeats)
    result = {
        "num": int(len(images)),
        "steps": pipe.sampling.num_inference_steps,
        "cfg": pipe.sampling.guidance_scale,
        "order": pipe.sampling.order,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "target_label": {
            "acc_target": float((pred == target).mean()),
            "acc_original": float((pred == original).mean()),
        },
        "original_label": {"acc_original": float((pred_control == original).mean())},
        "acc_target_by_class": per_target,
        "seconds_per_edit": {
            "batched": timing["batched"],
            "single": timing["single"],
            "batch": min(args.batch, args.num),
        },
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, args.json)
    print(json.dumps(result, indent=2))
    print(f"\nlower-half edits of {len(images)} test images, {result['steps']} steps, guidance {result['cfg']:g}:")
    print(
        f"  target label:   classified as target {result['target_label']['acc_target']:.3f}, "
        f"as original {result['target_label']['acc_original']:.3f}"
    )
    print(f"  original label: classified as original {result['original_label']['acc_original']:.3f}")
    print(
        f"  CPU time per edit: {1e3 * timing['batched']:.1f} ms batched ({result['seconds_per_edit']['batch']} per call), "
        f"{1e3 * timing['single']:.1f} ms one at a time"
    )


if __name__ == "__main__":
    main()
