"""`lpdgen info`: version, device, the named model configs with their parameter counts, and the models
embedded in the package (what runs with no download, and which flag uses each)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from .. import __version__
from ..utils import default_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print version, device, the named model configs and the embedded models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model import NAMED_CONFIGS, LPDConfig, count_parameters

    print(f"lpdgen {__version__}  torch {torch.__version__}  device {default_device()}")
    print(f"{'config':<10}{'image':>7}{'grid':>8}{'width':>7}{'depth':>7}{'heads':>7}{'parameters':>16}")
    for name in NAMED_CONFIGS:
        for size in (256, 512):
            cfg = LPDConfig.named(name, image_size=size)
            grid = f"{cfg.grid[0]}x{cfg.grid[1]}"
            print(f"{name:<10}{size:>7}{grid:>8}{cfg.width:>7}{cfg.depth:>7}{cfg.heads:>7}{count_parameters(cfg):>16,}")
    print("\nembedded in the package (offline, no download):")
    for what, parameters, use in embedded_models():
        print(f"  {what:<64}{parameters:>12,}  {use}")
    return 0


def embedded_models() -> list[tuple[str, int, str]]:
    """(description, parameter count, how to use it) of each model shipped as package data
    (:mod:`lpdgen.embedded`), read from the files' configs and tensor shapes (nothing is loaded: `info`
    stays instant)."""
    from ..embedded import DEFAULT_MODEL, EMBEDDED_MODELS, SHIPPED_TOKENIZERS, model_folder, tokenizer_weights
    from ..evaluation.classifier import ASSET as CLASSIFIER
    from ..pretrained import PIPELINE_FILE
    from ..tokenizer import VQConfig

    rows = []
    for name in EMBEDDED_MODELS:
        folder = model_folder(name)
        pipeline = json.loads((folder / PIPELINE_FILE).read_text())
        model = json.loads((folder / "model.json").read_text())["config"]
        sampling = pipeline["sampling"]
        side = json.loads(tokenizer_weights(pipeline["tokenizer"]).with_suffix(".json").read_text())["config"][
            "image_size"
        ]
        default = "the default; " if name == DEFAULT_MODEL else ""
        rows.append(
            (
                f"{name}: LPD, {side}x{side} Fashion-MNIST, {model['grid'][0]}x{model['grid'][1]} tokens, "
                f"{model['num_classes']} classes",
                _parameters(folder / pipeline["model"]),
                f"--model {name} ({default}{sampling['num_inference_steps']} steps, "
                f"guidance {sampling['guidance_scale']:g})",
            )
        )
    for weights in dict.fromkeys(tokenizer_weights(n) for n in SHIPPED_TOKENIZERS):  # each file once
        names = [n for n in SHIPPED_TOKENIZERS if tokenizer_weights(n) == weights]
        vq = VQConfig.from_dict(json.loads(weights.with_suffix(".json").read_text())["config"])
        side, codes = vq.image_size, vq.image_size // vq.downsample
        rows.append(
            (
                f"{' = '.join(names)} tokenizer: VQ, {side}x{side} -> {codes}x{codes} codes, "
                f"{vq.codebook_size} entries",
                _parameters(weights),
                f"--tokenizer {names[0]}",
            )
        )
    classifier = json.loads(CLASSIFIER.with_suffix(".json").read_text())
    rows.append(
        (
            f"fmnist classifier: 28x28 Fashion-MNIST, test accuracy {100 * classifier['test_accuracy']:.1f}%",
            _parameters(CLASSIFIER),
            "lpdgen eval metrics --classifier fmnist",
        )
    )
    return rows


def _parameters(path: Path) -> int:
    """Number of values in a safetensors file, from its header alone."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
