"""Compute the reference statistics that lpdgen ships for ``--ref fmnist`` and ``--ref fmnist-recon``
(``src/lpdgen/assets/reference_stats/*.npz``; format and tolerances in docs/evaluation.md).

    python scripts/reference_stats.py                          # the test split and its 64-token reconstructions
    python scripts/reference_stats.py --tokenizer fmnist-256   # add the reconstructions by another tokenizer
    python scripts/reference_stats.py --sets test --limit 500  # a quick dry run (writes to --work only)

The Inception pass is the slow part (10,000 images: 25+ minutes on 2 CPU cores), so it is resumable:
features are written in chunks of ``--chunk`` images to ``--work/<set>/`` (atomically, each checked
against a manifest of the network's, the images' and the tokenizer's hashes); a rerun computes only the
missing chunks, then writes the asset. ``--tokenizer`` takes whatever ``lpdgen.tokenizer.load_tokenizer``
accepts: a shipped name or a checkpoint path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lpdgen.data import FASHION_MNIST_DIR
from lpdgen.evaluation.classifier import FMNISTClassifier
from lpdgen.evaluation.inception import InceptionFeatures
from lpdgen.evaluation.protocol import fashion_mnist_image_set
from lpdgen.evaluation.reference import (
    SHIPPED_DIR,
    ReferenceName,
    array_sha1,
    reconstructions,
    state_sha1,
    write_shipped_statistics,
)
from lpdgen.io import atomic_write, atomic_write_json
from lpdgen.tokenizer import load_tokenizer

IDENTITY = ("num", "images_sha1", "inception_sha1", "tokenizer_sha1")  # what the feature chunks depend on


def set_images(ref: ReferenceName, data_root: str, work: Path, limit: int) -> tuple[np.ndarray, dict]:
    """uint8 ``(N, 32, 32, 1)`` images of a reference set and what identifies them (for the manifest).
    Reconstructions are kept in ``work/images.npy`` so a resumed run feeds the very same pixels."""
    test = fashion_mnist_image_set(data_root, "test").all()
    test = test[:limit] if limit else test
    info = {
        "source": "Fashion-MNIST test split, zero-padded to 32x32",
        "num": len(test),
        "source_sha1": array_sha1(test),
    }
    if ref.tokenizer is None:
        return test, {**info, "images_sha1": array_sha1(test)}
    tokenizer = load_tokenizer(ref.tokenizer)
    info.update(
        tokenizer=ref.tokenizer,
        tokenizer_sha1=state_sha1(tokenizer),
        source=f"reconstructions of the {info['source']} by tokenizer {ref.tokenizer!r}",
    )
    cached = work / "images.npy"
    manifest = _read_manifest(work)
    if (
        cached.is_file()
        and manifest.get("tokenizer_sha1") == info["tokenizer_sha1"]
        and manifest.get("num") == len(test)
    ):
        images = np.load(cached)
    else:
        t0 = time.perf_counter()
        images = reconstructions(tokenizer, test)
        print(f"{ref.name}: reconstructed {len(images)} images in {time.perf_counter() - t0:.0f} s", flush=True)
        save_npy(cached, images)
    return images, {**info, "images_sha1": array_sha1(images)}


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through :func:`lpdgen.io.atomic_write`: an interrupted run never leaves a torn chunk."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def _read_manifest(work: Path) -> dict:
    path = work / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def inception_features(
    images: np.ndarray, extractor: InceptionFeatures, work: Path, chunk: int, shard: tuple[int, int] = (0, 1)
) -> np.ndarray | None:
    """Features of all images, computed chunk by chunk; finished chunks are read back, not recomputed.
    With ``shard=(i, n)`` only chunks ``k`` with ``k % n == i`` are computed here (n processes share a
    set); None until every chunk exists."""
    parts = []
    t0, done = time.perf_counter(), 0
    for k, start in enumerate(range(0, len(images), chunk)):
        end = min(start + chunk, len(images))
        path = work / f"inception-{start:08d}-{end:08d}.npy"
        if path.is_file():
            parts.append(np.load(path))
            continue
        if k % shard[1] != shard[0]:
            parts.append(None)
            continue
        feats = extractor.features([images[start:end]], progress=False).astype(np.float32)  # the network's precision
        save_npy(path, feats)
        parts.append(feats)
        done += end - start
        rate = done / (time.perf_counter() - t0)
        print(f"{work.name}: {end}/{len(images)} images ({rate:.2f} images/s)", flush=True)
    if any(p is None for p in parts):  # other shards' chunks, not finished yet
        return None
    return np.concatenate(parts)


def measure(work_dirs: dict[str, Path], out: Path, seed: int = 0) -> dict:
    """How much each covariance format changes FID, and what it costs in bytes (docs/evaluation.md):
    for every set with finished features, FID of random subsets of 500 (the low-rank form) and 5,000
    (``sqrtm``) of its own images, and of the other set's full features, against the exact and the
    packed statistics. Written to ``out`` as JSON."""
    from lpdgen.evaluation.metrics import (
        FIDStatistics,
        feature_statistics,
        fid_to_statistics,
    )
    from lpdgen.evaluation.reference import (
        COVARIANCE_FORMATS,
        pack_covariance,
        unpack_covariance,
    )

    feats = {
        k: np.load(w / "features.npy").astype(np.float64)
        for k, w in work_dirs.items()
        if (w / "features.npy").is_file()
    }
    rng = np.random.default_rng(seed)
    report: dict = {}
    for name, f in feats.items():
        exact = feature_statistics(f)
        subsets = {f"own {n}": f[rng.choice(len(f), n, replace=False)] for n in (500, 5000)}
        subsets.update({f"{other} (all)": g for other, g in feats.items() if other != name})
        row = {
            "raw_features_float32_bytes": f.astype(np.float32).nbytes,
            "raw_features_float32_compressed_bytes": _compressed_size(features=f.astype(np.float32)),
        }
        exact_fid = {k: fid_to_statistics(v, exact) for k, v in subsets.items()}
        row["fid_exact"] = exact_fid
        for fmt in COVARIANCE_FORMATS:
            packed = pack_covariance(exact.sigma, fmt)
            stats = FIDStatistics(exact.mu, unpack_covariance(packed), exact.num)
            row[fmt] = {
                "bytes": sum(v.nbytes for v in packed.values()) + exact.mu.nbytes,
                "compressed_bytes": _compressed_size(mu=exact.mu, **packed),
                "fid_change": {k: fid_to_statistics(v, stats) - exact_fid[k] for k, v in subsets.items()},
            }
            print(name, fmt, json.dumps(row[fmt]), flush=True)
        report[name] = row
    atomic_write_json(report, out)
    return report


def _compressed_size(**arrays: np.ndarray) -> int:
    """Bytes of ``np.savez_compressed`` of these arrays (what a shipped file costs)."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getbuffer().nbytes


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--tokenizer", default="fmnist", help="tokenizer of the reconstruction set (load_tokenizer name or path)"
    )
    p.add_argument("--sets", nargs="+", default=["test", "recon"], choices=("test", "recon"), help="which sets")
    p.add_argument("--data-root", default=FASHION_MNIST_DIR, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--work", default="runs/reference_stats", help="resumable feature chunks and raw features")
    p.add_argument("--out-dir", default=str(SHIPPED_DIR), help="where the statistics files go (default: the package)")
    p.add_argument("--chunk", type=int, default=250, help="images per resumable chunk")
    p.add_argument(
        "--limit", type=int, default=0, help="first N test images only (a dry run; not written to --out-dir)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default; on a busy machine "
        "several 1-thread processes with --shard beat one multi-threaded one)",
    )
    p.add_argument(
        "--shard",
        default="0/1",
        help="I/N: compute chunks k with k %% N == I only (run N processes); "
        "the last one to finish writes the statistics",
    )
    p.add_argument(
        "--measure",
        default=None,
        metavar="JSON",
        help="instead: measure the FID change and size of each "
        "covariance format on the finished features in --work, into this file",
    )
    args = p.parse_args(argv)
    if args.measure:
        measure(
            {r.name: Path(args.work) / r.file_stem for r in (ReferenceName(), ReferenceName(args.tokenizer))},
            Path(args.measure),
        )
        return 0
    shard = tuple(int(v) for v in args.shard.split("/"))
    if len(shard) != 2 or not 0 <= shard[0] < shard[1]:
        p.error(f"--shard must be I/N with 0 <= I < N, got {args.shard}")
    if args.threads:
        torch.set_num_threads(args.threads)
    extractor = InceptionFeatures()
    classifier = FMNISTClassifier.from_checkpoint()
    for which in args.sets:
        ref = ReferenceName(None if which == "test" else args.tokenizer)
        work = Path(args.work) / (ref.file_stem + (f"-limit{args.limit}" if args.limit else ""))
        work.mkdir(parents=True, exist_ok=True)
        images, info = set_images(ref, args.data_root, work, args.limit)
        manifest = {**info, "inception_sha1": extractor.sha1}
        old = _read_manifest(work)
        changed = [k for k in IDENTITY if k in old and old[k] != manifest.get(k)]
        if changed:
            print(
                f"{work}: the chunks there were made from other inputs (changed: {changed}); "
                "delete the folder to start over",
                file=sys.stderr,
            )
            return 1
        atomic_write_json(manifest, work / "manifest.json")
        features = inception_features(images, extractor, work, args.chunk, shard)
        if features is None:
            print(f"{ref.name}: shard {args.shard} done; other shards' chunks are missing (rerun once they finish)")
            continue
        save_npy(work / "features.npy", features)
        if args.limit:
            print(f"{ref.name}: dry run of {len(images)} images done (features in {work}); nothing shipped")
            continue
        path = write_shipped_statistics(
            Path(args.out_dir) / f"{ref.file_stem}.npz", ref, images, features, extractor.sha1, classifier, info
        )
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
