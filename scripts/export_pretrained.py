"""Turn a training run into a pretrained pipeline folder (what `LPDPipeline.from_pretrained(path)` reads).

    python scripts/export_pretrained.py runs/fmnist runs/lpd_fmnist --steps 8 --cfg 3.0 --fp16

The run is `lpdgen train`'s --out-dir (its final lpd.safetensors, else its newest checkpoint) or one of
its weights files; its tokenizer is the one the run recorded unless --tokenizer says otherwise. A run
samples without exporting (`lpdgen sample --model runs/fmnist`); a folder adds the sampling defaults
chosen by measuring (benchmarks/quality.py --sweep ...) and the Fashion-MNIST class names when the model
has 10 classes, and references a shipped tokenizer by name instead of copying it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lpdgen.data import FASHION_MNIST_CLASSES
from lpdgen.embedded import SHIPPED_TOKENIZERS
from lpdgen.pipeline import LPDPipeline
from lpdgen.pretrained import from_weights, weights_tokenizer
from lpdgen.runs import recorded, run_weights
from lpdgen.settings import SamplingConfig


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a training run folder (lpdgen train --out-dir) or one of its weights files")
    p.add_argument("out", help="folder to write, e.g. runs/lpd_fmnist")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="a shipped tokenizer (fmnist, fmnist-256: referenced by name) or a VQ checkpoint "
        "(default: the one the run recorded)",
    )
    p.add_argument("--steps", type=int, required=True, help="the folder's default decoding steps")
    p.add_argument("--cfg", type=float, required=True, help="the folder's default guidance scale")
    p.add_argument("--order", default="locality", help="the folder's default generation order")
    p.add_argument("--fp16", action="store_true", help="store the weights in float16 (half the size)")
    args = p.parse_args(argv)
    path = Path(args.run)
    try:
        weights = run_weights(path) if path.is_dir() else path
    except FileNotFoundError as e:
        p.error(str(e))
    rec = recorded(weights)
    if rec is None:
        p.error(f"{weights}: no model config saved with these weights (not written by lpdgen train)")
    tokenizer = args.tokenizer or weights_tokenizer(rec)
    if tokenizer is None:
        p.error(f"{weights}: the run recorded no tokenizer and no shipped one fits; pass --tokenizer")
    parts = from_weights(weights, tokenizer)
    sampling = SamplingConfig(num_inference_steps=args.steps, guidance_scale=args.cfg, order=args.order)
    names = FASHION_MNIST_CLASSES if parts.model.cfg.num_classes == len(FASHION_MNIST_CLASSES) else None
    pipe = LPDPipeline(parts.model, parts.tokenizer, sampling=sampling, class_names=names)
    shipped = tokenizer if tokenizer in SHIPPED_TOKENIZERS else None
    folder = pipe.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else torch.float32, tokenizer_name=shipped)
    print(f"wrote {folder} from {weights}")


if __name__ == "__main__":
    main()
