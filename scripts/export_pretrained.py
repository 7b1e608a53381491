"""Turn a training run into a pretrained pipeline folder (what `LPDPipeline.from_pretrained(path)` reads).

    python scripts/export_pretrained.py runs/fmnist/lpd.safetensors src/lpdgen/assets/lpd_fmnist \
        --steps 8 --cfg 3.0 --fp16

The sampling defaults (steps, guidance, order) are stored with the model, so choose them by measuring
(benchmarks/quality.py --sweep ...). The Fashion-MNIST class names are used when the model has 10 classes.
"""

from __future__ import annotations

import argparse

import torch

from lpdgen.data import FASHION_MNIST_CLASSES
from lpdgen.embedded import SHIPPED_TOKENIZERS
from lpdgen.model import LPD
from lpdgen.pipeline import LPDPipeline
from lpdgen.settings import SamplingConfig
from lpdgen.tokenizer import load_tokenizer


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="lpd.safetensors written at the end of `lpdgen train` (config beside it)")
    p.add_argument("out", help="folder to write")
    p.add_argument(
        "--tokenizer",
        default="fmnist",
        help="a shipped tokenizer (fmnist, fmnist-256: referenced by name) or a VQ checkpoint",
    )
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--cfg", type=float, required=True)
    p.add_argument("--order", default="locality")
    p.add_argument("--fp16", action="store_true", help="store the weights in float16 (half the size)")
    args = p.parse_args(argv)
    model = LPD.from_checkpoint(args.weights)
    names = FASHION_MNIST_CLASSES if model.cfg.num_classes == len(FASHION_MNIST_CLASSES) else None
    sampling = SamplingConfig(num_inference_steps=args.steps, guidance_scale=args.cfg, order=args.order)
    pipe = LPDPipeline(model, load_tokenizer(args.tokenizer), sampling=sampling, class_names=names)
    shipped = args.tokenizer if args.tokenizer in SHIPPED_TOKENIZERS else None
    folder = pipe.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else torch.float32, tokenizer_name=shipped)
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
