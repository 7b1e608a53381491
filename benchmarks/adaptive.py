"""Adaptive steps against fixed schedules on an embedded model: mean forward passes vs class accuracy and
classifier FD, with wall time per image at batch 1 and 64 (docs/decoding.md, "Adaptive steps").

    python benchmarks/adaptive.py --num 500                       # every setting (resumable, see --json)
    python benchmarks/adaptive.py --report                        # table + docs/adaptive_tradeoff.png from the JSON
    python benchmarks/adaptive.py --fid fixed/locality/8/seed0 auto/16   # + Inception FID of 2,000 images each

Image ``i`` of a setting has class ``i % 10`` and seed ``image_seed(seed, i)``, as in benchmarks/replicate.py,
whose classifier metrics this reuses (FD test / FD train: Frechet distance of the classifier's penultimate
features against the test / training split). Each finished setting is written at once to ``--json``; a rerun
skips the settings already there. The default schedule is also run with a second seed: its spread is the
"equal quality" band of the goal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpdgen.evaluation.classifier import FMNISTClassifier
from lpdgen.evaluation.metrics import fid
from lpdgen.evaluation.protocol import FMNIST_REFERENCE, reference_statistics
from lpdgen.io import atomic_write_json
from lpdgen.pipeline import LPDPipeline
from lpdgen.rng import image_seeds

sys.path.insert(0, str(Path(__file__).parent))
from quality import inception_stats  # noqa: E402  (sibling benchmark script)
from replicate import GRIDS, Context, reference_features  # noqa: E402
from replicate_report import line_panels  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def settings(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """(name, pipeline overrides) in run order: the default twice (seed spread), adaptive, other fixed ones."""
    out = [
        (f"fixed/locality/{args.default_steps}/seed{s}", dict(num_inference_steps=args.default_steps)) for s in (0, 1)
    ]
    out += [(f"auto/{g:g}", dict(num_inference_steps="auto", entropy_bound=g)) for g in args.gammas]
    for order in ("locality", "random"):
        out += [
            (f"fixed/{order}/{k}", dict(num_inference_steps=k, order=order))
            for k in args.steps
            if not (order == "locality" and k == args.default_steps)
        ]
    return out


def measure(ctx: Context, pipe: LPDPipeline, name: str, kw: dict, num: int, batch: int) -> tuple[np.ndarray, dict]:
    """``num`` images of a setting (image ``i``: class ``i % 10``, seed ``image_seed(seed, i)``) and their
    row: classifier metrics, mean forward passes, wall time."""
    seed = 1 if name.endswith("seed1") else 0
    labels = np.arange(num) % 10
    images, steps, t0 = [], [], time.perf_counter()
    for s in tqdm(range(0, num, batch), desc=name, leave=False):
        idx = range(s, min(num, s + batch))
        out = pipe(labels[s : s + len(idx)].tolist(), seeds=image_seeds(seed, idx), output_type="np", **kw)
        images.append(out.images)
        steps += out.num_steps
    seconds = time.perf_counter() - t0
    images = np.concatenate(images)
    row = ctx.classifier_row(images, labels)
    row.pop("accuracy_per_class")
    row.update(mean_steps=float(np.mean(steps)), seconds_per_image_batch=seconds / num, batch=batch)
    return images, row


def run(ctx: Context, pipe: LPDPipeline, name: str, kw: dict, args: argparse.Namespace) -> dict:
    _, row = measure(ctx, pipe, name, kw, args.num, args.batch)
    for b in args.latency_batches:  # wall time per image of one call of b images (median of repeats)
        times = []
        for r in range(args.latency_repeats):
            t = time.perf_counter()
            pipe(
                list(range(b)) if b <= 10 else (np.arange(b) % 10).tolist(),
                seeds=image_seeds(7 + r, range(b)),
                output_type="codes",
                **kw,
            )
            times.append((time.perf_counter() - t) / b)
        row[f"seconds_per_image_b{b}"] = float(np.median(times))
    return row


def run_fid(ctx: Context, pipe: LPDPipeline, name: str, kw: dict, args: argparse.Namespace, inception) -> dict:
    """Inception FID of ``--num-fid`` images of a setting against the test split and against its
    reconstructions by the model's tokenizer (the model's own error), with the classifier metrics of the
    same images."""
    extractor, ref, recon = inception
    images, row = measure(ctx, pipe, name, kw, args.num_fid, args.batch)
    stats = inception_stats(extractor, images, None)
    return {**row, "fid": fid(stats, ref), "fid_recon": fid(stats, recon), "num_fid": len(images)}


def log_row(name: str, row: dict) -> None:
    print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)


def report(data: dict, args: argparse.Namespace) -> None:
    rows = data["rows"]
    print(
        "| setting | mean passes | accuracy | FD test | FD train | s/image b=1 | s/image b=64 | s/step, batch of 100 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        per_step = r["seconds_per_image_batch"] * r["batch"] / r["mean_steps"]  # the cost of one step
        print(
            f"| {name} | {r['mean_steps']:.2f} | {r['accuracy']:.3f} | {r['fd_test']:.2f} | {r['fd_train']:.2f} | "
            f"{r.get('seconds_per_image_b1', float('nan')):.3f} | {r.get('seconds_per_image_b64', float('nan')):.4f} | {per_step:.2f} |"
        )
    series = {"fixed, locality": [], "fixed, random": [], "adaptive (gamma sweep)": []}
    for name, r in rows.items():
        key = "adaptive (gamma sweep)" if name.startswith("auto") else f"fixed, {name.split('/')[1]}"
        if name.endswith("seed1"):
            continue
        series[key].append((r["mean_steps"], r))
    panels = []
    for metric, label in (("fd_test", "classifier FD (test)"), ("accuracy", "class accuracy")):
        panels.append(
            dict(
                title=label,
                x_label="mean forward passes per image (log2)",
                series={k: sorted((x, r[metric]) for x, r in v) for k, v in series.items()},
                y_format="{:.2f}" if metric == "fd_test" else "{:.2f}",
                from_zero=False,
            )
        )
    if data.get("fid"):
        print()
        print(
            "| setting (Inception rows) | images | mean passes | accuracy | FD test | Inception FID vs test | vs recon |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, r in data["fid"].items():
            print(
                f"| {name} | {r['num_fid']:,} | {r['mean_steps']:.2f} | {r['accuracy']:.3f} | {r['fd_test']:.2f} | "
                f"{r['fid']:.2f} | {r['fid_recon']:.2f} |"
            )
    line_panels(
        panels,
        Path(args.plot),
        title=f"{data['meta']['model']}: adaptive steps vs fixed schedules ({data['meta']['num']} images per point)",
    )
    print(f"wrote {args.plot}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fmnist-64")
    p.add_argument("--num", type=int, default=500, help="images per setting")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--default-steps", type=int, default=8)
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--gammas", type=float, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--latency-batches", type=int, nargs="*", default=[1, 64])
    p.add_argument("--latency-repeats", type=int, default=3)
    p.add_argument("--only", nargs="*", help="names (prefixes) to run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "lpdgen"))
    p.add_argument("--json", default=str(DOCS / "adaptive.json"))
    p.add_argument("--plot", default=str(DOCS / "adaptive_tradeoff.png"))
    p.add_argument("--report", action="store_true", help="print the table and draw the plot from --json")
    p.add_argument("--fid", nargs="*", default=[], help="settings (names as in the table) that also get Inception FID")
    p.add_argument("--num-fid", type=int, default=2000, help="images per Inception FID row")
    args = p.parse_args(argv)
    path = Path(args.json)
    data = __import__("json").loads(path.read_text()) if path.is_file() else {"meta": {}, "rows": {}}
    if args.report:
        return report(data, args)
    known = dict(settings(args))
    unknown = [n for n in args.fid if n not in known]
    if unknown:
        raise SystemExit(f"error: --fid: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    torch.set_num_threads(args.threads)
    data["meta"] = dict(model=args.model, num=args.num, threads=args.threads, torch=torch.__version__)
    pipe = LPDPipeline.from_pretrained(args.model)
    classifier = FMNISTClassifier.from_checkpoint()
    cache = Path(args.cache_dir)
    ctx = Context(
        None, None, None, pipe, classifier, *(reference_features(classifier, s, cache) for s in ("test", "train"))
    )
    todo = [
        (n, kw)
        for n, kw in settings(args)
        if n not in data["rows"] and (not args.only or any(n.startswith(o) for o in args.only))
    ]
    for name, kw in tqdm(todo, desc="settings"):
        data["rows"][name] = run(ctx, pipe, name, kw, args)
        atomic_write_json(data, path)
        log_row(name, data["rows"][name])
    fid_todo = [n for n in args.fid if n not in data.setdefault("fid", {})]
    if fid_todo:
        from lpdgen.evaluation.inception import InceptionFeatures

        extractor = InceptionFeatures()
        ref, _, _ = reference_statistics(FMNIST_REFERENCE, extractor)
        recon, _, _ = reference_statistics(GRIDS[args.model].recon_reference, extractor)
        for name in tqdm(fid_todo, desc="Inception rows"):
            data["fid"][name] = run_fid(ctx, pipe, name, known[name], args, (extractor, ref, recon))
            atomic_write_json(data, path)
            log_row(name, data["fid"][name])


if __name__ == "__main__":
    main()
