"""Sanity FIDs of the offline FID Inception on Fashion-MNIST (the acceptance checks of issue 6).

    python benchmarks/fid_sanity.py --num 1000 [--json out.json]

Sets (grayscale replicated to 3 channels, bilinear resize to 299 - see docs/evaluation.md):
  train       first ``num`` training images
  test        first ``num`` test images (as ``.npz``), and the same images as a PNG folder
  test+noise  test images plus Gaussian noise of std 64 grey levels (clipped)
  digits      a dataset-like synthetic set: digits 0-9 drawn with PIL's font, random size/shift/rotation
Expected: FID(train, test) small, the other two large, npz and folder paths equal.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lpdgen.data import load_fashion_mnist
from lpdgen.evaluation.inception import InceptionFeatures
from lpdgen.evaluation.metrics import feature_statistics, fid, precision_recall
from lpdgen.evaluation.protocol import read_image_set, to_rgb, write_png_folder


def synthetic_digits(num: int, seed: int = 0, size: int = 28) -> np.ndarray:
    """uint8 (num, size, size) white digits on black, MNIST-like in layout, random size/shift/rotation."""
    rng = np.random.default_rng(seed)
    out = np.empty((num, size, size), np.uint8)
    for i in range(num):
        font = ImageFont.load_default(size=int(rng.integers(16, 24)))
        canvas = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(canvas)
        draw.text(
            (size / 2 + rng.normal(0, 1.5), size / 2 + rng.normal(0, 1.5)),
            str(i % 10),
            fill=255,
            font=font,
            anchor="mm",
            stroke_width=int(rng.integers(0, 2)),
            stroke_fill=255,
        )
        out[i] = np.asarray(canvas.rotate(rng.normal(0, 10), resample=Image.BILINEAR))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=1000, help="images per set")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="only .* images for")  # N < 2048 is deliberate here

    extractor = InceptionFeatures(batch_size=args.batch_size)
    train, _ = load_fashion_mnist(split="train")
    test, _ = load_fashion_mnist(split="test")
    rng = np.random.default_rng(0)
    test = test[: args.num]
    noisy = np.clip(test.astype(np.float64) + rng.normal(0, 64, size=test.shape), 0, 255).round().astype(np.uint8)
    sets = {"train": train[: args.num], "test": test, "test+noise": noisy, "digits": synthetic_digits(args.num)}

    feats, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, images in sets.items():
            path = Path(tmp) / f"{name}.npz"
            np.savez(path, arr_0=to_rgb(images))
            t = time.perf_counter()
            feats[name] = extractor.features(read_image_set(path).batches(), total=len(images), desc=name)
            seconds[name] = time.perf_counter() - t
        folder = write_png_folder(to_rgb(test), Path(tmp) / "test_png")
        feats["test (folder)"] = extractor.features(read_image_set(folder).batches(), total=len(test), desc="folder")

    stats = {k: feature_statistics(v) for k, v in feats.items()}
    rows = []  # each FID costs one 2048x2048 sqrtm (about a minute on 2 busy cores): only the informative pairs
    for ref, other in (("train", "test"), ("train", "test (folder)"), ("test", "test+noise"), ("test", "digits")):
        p, r = precision_recall(feats[ref], feats[other])
        rows.append({"pair": f"{ref} vs {other}", "fid": fid(stats[ref], stats[other]), "precision": p, "recall": r})
    per_1000 = 1000 * float(np.mean(list(seconds.values()))) / args.num

    print(f"num={args.num} per set, Inception SHA1 {extractor.sha1[:12]}..., {per_1000:.1f} s per 1000 images")
    print(f"{'pair':<26}{'FID':>10}{'precision':>11}{'recall':>9}")
    for row in rows:
        print(f"{row['pair']:<26}{row['fid']:>10.2f}{row['precision']:>11.3f}{row['recall']:>9.3f}")
    result = {
        "num": args.num,
        "seconds_per_1000_images": per_1000,
        "rows": rows,
        "npz_equals_folder": bool(np.array_equal(feats["test"], feats["test (folder)"])),
    }
    print(f"npz and folder features identical: {result['npz_equals_folder']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
