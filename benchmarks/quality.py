"""Quality of a Fashion-MNIST LPD model with the project's own tools: class accuracy by the shipped
classifier and Inception FID against the real test split and against its tokenizer reconstructions
(the best any model using this tokenizer can do).

    python benchmarks/quality.py                                   # embedded model, its defaults, 2000 images
    python benchmarks/quality.py --settings 8:3 64:3 --num 2000    # steps:guidance pairs
    python benchmarks/quality.py --sweep 1 1.5 2 3 4 --sweep-steps 8 --sweep-num 500 --no-fid   # guidance sweep
    python benchmarks/quality.py --quantize int8 --num 1000 --agreement 1000   # int8 vs fp32 (docs/engine.md)

Images are generated with per-image seeds (``lpdgen.rng.image_seed(seed, i)``), class ``i % 10`` (equal
per class). Results are appended to ``--json`` one object per setting; the table is printed. Reference
features are cached in ``--cache-dir`` (the Inception pass costs about 2 minutes per 1,000 images here).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpdgen.data import FASHION_MNIST_PAD, FashionMNIST
from lpdgen.evaluation.classifier import FMNISTClassifier
from lpdgen.evaluation.metrics import feature_statistics, fid
from lpdgen.images import float_to_uint8, uint8_to_float
from lpdgen.pipeline import LPDPipeline
from lpdgen.quantize import QUANTIZE_MODES
from lpdgen.rng import image_seeds


def generate(
    pipe: LPDPipeline,
    num: int,
    steps: int | None,
    cfg: float | None,
    order: str | None,
    seed: int,
    batch: int,
    tau: float | None = None,
    rho: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """``num`` images, image ``i`` of class ``i % classes`` from seed ``image_seed(seed, i)``; every setting
    left None takes the pipeline's default. Returns uint8 images, labels and seconds per image."""
    labels = np.arange(num) % pipe.model.cfg.num_classes
    out, t0 = [], time.perf_counter()
    for s in tqdm(range(0, num, batch), desc=f"generate steps={steps} cfg={cfg}", unit="batch"):
        idx = range(s, min(num, s + batch))
        out.append(
            pipe(
                labels[s : s + len(idx)].tolist(),
                num_inference_steps=steps,
                guidance_scale=cfg,
                order=order,
                tau=tau,
                rho=rho,
                seeds=image_seeds(seed, idx),
                output_type="np",
            ).images
        )
    return np.concatenate(out), labels, (time.perf_counter() - t0) / num


def greedy_agreement(
    pipe: LPDPipeline,
    reference: LPDPipeline,
    num: int,
    steps: int | None,
    cfg: float | None,
    order: str | None,
    seed: int,
    batch: int,
) -> float:
    """Share of greedy (top-1) tokens of ``pipe`` equal to ``reference``'s on the same labels, seeds and orders."""
    labels = (np.arange(num) % pipe.model.cfg.num_classes).tolist()
    same = 0
    for s in tqdm(range(0, num, batch), desc="greedy agreement", unit="batch"):
        idx = range(s, min(num, s + batch))
        kw = dict(
            num_inference_steps=steps,
            guidance_scale=cfg,
            order=order,
            top_k=1,
            seeds=image_seeds(seed, idx),
            output_type="codes",
        )
        same += int(
            (pipe(labels[s : s + len(idx)], **kw).codes == reference(labels[s : s + len(idx)], **kw).codes).sum()
        )
    return same / (num * pipe.model.cfg.num_tokens)


def reconstructions(pipe: LPDPipeline, images: np.ndarray, batch: int = 500) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            x = uint8_to_float(torch.from_numpy(images[s : s + batch])).to(pipe.tokenizer.device)
            out.append(float_to_uint8(pipe.tokenizer.decode(pipe.tokenizer.encode(x)).clamp(-1, 1)))
    return np.concatenate(out)


def inception_stats(extractor, images: np.ndarray, cache: Path | None):
    if cache is not None and cache.is_file():
        return feature_statistics(np.load(cache))
    feats = extractor.features([images[s : s + 200] for s in range(0, len(images), 200)], total=len(images))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, feats)
    return feature_statistics(feats)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default="fmnist-64", help="embedded model name or pretrained folder (docs figures: fmnist-64)"
    )
    p.add_argument(
        "--settings",
        nargs="*",
        default=["default"],
        help="steps:guidance pairs, or 'default' (the model's own settings)",
    )
    p.add_argument("--order", default=None, help="order type (default: the model's own)")
    p.add_argument("--num", type=int, default=2000, help="generated images per setting (multiple of 10)")
    p.add_argument("--ref-num", type=int, default=2000, help="test images in the FID references")
    p.add_argument("--no-fid", action="store_true", help="class accuracy only (fast)")
    p.add_argument("--sweep", type=float, nargs="*", default=[], help="guidance scales for an accuracy sweep")
    p.add_argument("--sweep-steps", type=int, nargs="*", default=[8])
    p.add_argument("--sweep-num", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--cache-dir", default="runs/quality_cache")
    p.add_argument("--json", default="runs/quality.json")
    p.add_argument("--quantize", default=None, choices=QUANTIZE_MODES, help="generate with a quantized model")
    p.add_argument(
        "--agreement",
        type=int,
        default=0,
        help="with --quantize: greedy-token agreement with the fp32 model on this many images per setting, "
        "and the fp32 model's class accuracy on the same seeds",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = LPDPipeline.from_pretrained(args.model, quantize=args.quantize)
    reference = LPDPipeline.from_pretrained(args.model) if args.quantize and args.agreement else None
    classifier = FMNISTClassifier.from_checkpoint()
    test = FashionMNIST(split="test", pad_to=FASHION_MNIST_PAD)
    real = test.images.numpy()[..., None]
    real_labels = np.asarray(test.labels)
    rows = []
    recon = reconstructions(pipe, real)
    rows.append({"setting": "real test images", "accuracy": classifier.accuracy(real, real_labels), "num": len(real)})
    rows.append(
        {"setting": "tokenizer reconstructions", "accuracy": classifier.accuracy(recon, real_labels), "num": len(recon)}
    )
    extractor = ref_real = ref_recon = None
    if not args.no_fid:
        from lpdgen.evaluation.inception import InceptionFeatures

        extractor = InceptionFeatures()
        cache = Path(args.cache_dir)
        ref_real = inception_stats(extractor, real[: args.ref_num], cache / f"real_test_{args.ref_num}.npy")
        ref_recon = inception_stats(extractor, recon[: args.ref_num], cache / f"recon_test_{args.ref_num}.npy")
        rows[1]["fid_vs_real"] = fid(ref_recon, ref_real)
    settings = [(s, None, None) if s == "default" else (s, *map(float, s.split(":"))) for s in args.settings]
    settings += [(f"{k}:{g:g} (sweep)", k, g) for k in args.sweep_steps for g in args.sweep] if args.sweep else []
    for name, steps, cfg in settings:
        steps = int(steps) if steps is not None else None
        num = args.sweep_num if "sweep" in name else args.num
        images, labels, sec = generate(pipe, num, steps, cfg, args.order, args.seed, args.batch)
        row = {
            "setting": name,
            "steps": steps or pipe.sampling.num_inference_steps,
            "guidance": cfg if cfg is not None else pipe.sampling.guidance_scale,
            "order": args.order or pipe.sampling.order,
            "num": num,
            "seed": args.seed,
            "quantize": args.quantize,
            "accuracy": classifier.accuracy(images, labels),
            "sec_per_image": sec,
        }
        if reference is not None:
            row["greedy_agreement"] = greedy_agreement(
                pipe, reference, args.agreement, steps, cfg, args.order, args.seed, args.batch
            )
            fp32_images, _, _ = generate(reference, num, steps, cfg, args.order, args.seed, args.batch)
            row["fp32_accuracy"] = classifier.accuracy(fp32_images, labels)
        if extractor is not None and "sweep" not in name:
            stats = inception_stats(extractor, images, None)
            row["fid_vs_real"], row["fid_vs_recon"] = fid(stats, ref_real), fid(stats, ref_recon)
            if reference is not None:  # the fp32 model on the same seeds: the change is what quantizing costs
                fp32_stats = inception_stats(extractor, fp32_images, None)
                row["fp32_fid_vs_real"], row["fp32_fid_vs_recon"] = (
                    fid(fp32_stats, ref_real),
                    fid(fp32_stats, ref_recon),
                )
        rows.append(row)
        print(json.dumps(row))
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
    print("\n| setting | steps | guidance | images | class accuracy | FID vs real test | FID vs reconstructions |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        f1 = f"{r['fid_vs_real']:.2f}" if "fid_vs_real" in r else "-"
        f2 = f"{r['fid_vs_recon']:.2f}" if "fid_vs_recon" in r else "-"
        print(
            f"| {r['setting']}{' (' + r['quantize'] + ')' if r.get('quantize') else ''} | {r.get('steps', '-')} | {r.get('guidance', '-')} | {r['num']} | "
            f"{100 * r['accuracy']:.1f}% | {f1} | {f2} |"
        )
        if "fp32_accuracy" in r:  # the same seeds through the fp32 model
            g1 = f"{r['fp32_fid_vs_real']:.2f}" if "fp32_fid_vs_real" in r else "-"
            g2 = f"{r['fp32_fid_vs_recon']:.2f}" if "fp32_fid_vs_recon" in r else "-"
            print(
                f"| {r['setting']} (fp32, same seeds) | {r.get('steps', '-')} | {r.get('guidance', '-')} | {r['num']} | "
                f"{100 * r['fp32_accuracy']:.1f}% | {g1} | {g2} |"
            )
    for r in rows:
        if "greedy_agreement" in r:
            print(f"\n{r['setting']}: greedy-token agreement with fp32 {r['greedy_agreement']:.3f}")


if __name__ == "__main__":
    main()
