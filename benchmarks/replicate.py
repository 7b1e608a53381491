"""Does LPD's claim hold on the embedded Fashion-MNIST model (8x8 = 64 tokens)? Every measurement of
docs/replication.md, as one resumable run.

    python benchmarks/replicate.py                                  # everything (hours on 2 CPU cores)
    python benchmarks/replicate.py --only 'main/locality/*'         # a subset (shell-style patterns)
    python benchmarks/replicate.py --skip 'latency/*' --num 500 --json runs/smoke.json   # a quick look
    python benchmarks/replicate.py --list                           # the settings, in run order

Each finished setting is written at once (atomically) to ``--json`` under its name; a rerun skips the
names already there, so an interrupted run resumes and ``--only`` runs a subset (``--redo PATTERN``
remeasures settings the file already has). Settings run in the order listed by ``--list``: the headline
rows first, then the second seed (with its Inception FIDs), the 8-step order ablations, the other step
counts, and extra Inception rows last, so a run cut short loses the cheapest-to-redo tail.

Protocol:

- image ``i`` of a setting has class ``i % 10`` (equal images per class) and seed ``image_seed(seed, i)``
  (its order and sampling noise depend on nothing else);
- class accuracy by the shipped classifier, and a Frechet distance between the classifier's penultimate
  features (576 dims) of ``--num`` generated images and of the 10,000-image test split ("FD test"),
  and of the 60,000-image training split ("FD train");
- Inception FID of the first ``--num-fid`` generated images against the whole test split (reference
  statistics cached by :func:`lpdgen.evaluation.protocol.reference_statistics`) for the headline rows;
- the guidance scale of a step count is the one with the lowest FD train in a sweep of ``--sweep-num``
  images (random order, seed ``SWEEP_SEED``): nothing is ever chosen on the test split, and the tau/rho
  grid is likewise ranked by FD train;
- latency: medians of interleaved repeats of one pipeline call per step count (generation, including the
  orders) and of the tokenizer decode, at each ``--latency-batches`` size.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpdgen.data import FASHION_MNIST_PAD, FashionMNIST
from lpdgen.evaluation.classifier import FMNISTClassifier
from lpdgen.evaluation.metrics import FIDStatistics, feature_statistics, fid
from lpdgen.evaluation.protocol import FMNIST_REFERENCE, reference_statistics
from lpdgen.io import atomic_write_json
from lpdgen.pipeline import LPDPipeline
from lpdgen.rng import image_seeds

sys.path.insert(0, str(Path(__file__).parent))
from quality import generate, inception_stats, reconstructions  # noqa: E402  (sibling benchmark script)

ORDERS = ("locality", "random", "raster", "halton")
SWEEP_SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)
SWEEP_SEED = 100  # sweep images are not the measured ones
SECOND_SEED = 1
# Order ablations of the locality-aware order at the headline step count. The published thresholds (tau 1,
# rho 2) were chosen for a 16x16 grid; on 8x8 a Chebyshev spacing of rho + 1 = 3 fits only 9 cells, fewer
# than the later groups. Proximity is at most 4 + 4/sqrt 2 = 6.83 (all eight neighbours selected), so
# tau = 7 empties the candidate set and every cell comes from farthest-point sampling: repulsion only.
# rho = 0: no repulsion.
PROXIMITY_ONLY = (1.0, 0.0)
REPULSION_ONLY = (7.0, 2.0)
TAU_GRID = (0.7, 1.0, 1.7)  # one diagonal neighbour; one edge neighbour; an edge and a diagonal one
RHO_GRID = (1.0, 2.0, 3.0)
LATENCY_BATCHES = (1, 8, 64, 256)


@dataclass(frozen=True)
class Grid:
    """The step counts measured for one embedded model."""

    tokens: int  # one token per step: the autoregressive baseline
    steps: tuple[int, ...]  # parallel step counts of the grid
    headline: int  # the model's own step count: headline rows, second seed, ablations, thresholds
    latency_steps: tuple[int, ...]
    recon_reference: str  # the test split through the model's own tokenizer: the FID a perfect model would get 0 on


GRIDS = {
    "fmnist-64": Grid(64, (4, 6, 8, 12, 16, 32), 8, (4, 8, 16, 32, 64), "fmnist-recon:fmnist"),
    # 20: the paper's step count for 256 tokens
    "fmnist-256": Grid(256, (8, 12, 20, 32), 20, (8, 20, 32, 256), "fmnist-recon:fmnist-256"),
}
LATENCY_GUIDANCE = 3.0  # the shipped default (guided: two forward streams), for every step count


# --- the result file ----------------------------------------------------------------------------------


class ResultStore:
    """``{"results": {name: row}}`` in one JSON file, rewritten atomically after every row, so that a run
    killed at any point leaves a valid file holding every finished setting."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"results": {}}
        if not isinstance(self.data.get("results"), dict):
            raise ValueError(f"{self.path}: not a replication result file (no 'results' object)")

    @property
    def results(self) -> dict[str, dict]:
        return self.data["results"]

    def __contains__(self, name: str) -> bool:
        return name in self.results

    def _write(self) -> None:
        """Merge with what is on disk first, so that a second run on a disjoint ``--only`` subset of the
        same file keeps the rows the other one wrote meanwhile (not locked: rows finish minutes apart)."""
        if self.path.is_file():
            disk = json.loads(self.path.read_text())
            self.data["results"] = {**disk.get("results", {}), **self.results}
            self.data["meta"] = {**disk.get("meta", {}), **self.data.get("meta", {})}
        atomic_write_json(self.data, self.path)

    def add(self, name: str, row: dict) -> None:
        self.results[name] = row
        self._write()

    def set_meta(self, **meta) -> None:
        self.data.setdefault("meta", {}).update(meta)
        self._write()


def selected(name: str, only: list[str], skip: list[str]) -> bool:
    """Whether a setting runs under the ``--only`` / ``--skip`` shell-style patterns."""
    if only and not any(fnmatch.fnmatchcase(name, p) for p in only):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in skip)


# --- settings -----------------------------------------------------------------------------------------


@dataclass
class Setting:
    """One measured configuration; its name is its key in the result file."""

    name: str
    kind: str  # "generate" | "sweep" | "latency" | "floor" | "fid"
    steps: int = 0
    order: str = "random"
    seed: int = 0
    tau: float | None = None  # None: the model's own thresholds
    rho: float | None = None
    inception: bool = False
    guidance: float | None = None  # sweeps only; generation rows take the sweep's choice
    extra: dict = field(default_factory=dict)


def gen_name(order: str, steps: int, seed: int = 0, tau: float | None = None, rho: float | None = None) -> str:
    thresholds = "" if tau is None else f"/tau={tau:g},rho={rho:g}"
    return f"main/{order}/steps={steps}{thresholds}/seed={seed}"


def gen(
    order: str, steps: int, seed: int = 0, tau: float | None = None, rho: float | None = None, inception: bool = False
) -> Setting:
    return Setting(gen_name(order, steps, seed, tau, rho), "generate", steps, order, seed, tau, rho, inception)


def sweep(steps: int, scales: tuple[float, ...]) -> list[Setting]:
    return [Setting(f"sweep/steps={steps}/g={g:g}", "sweep", steps, "random", SWEEP_SEED, guidance=g) for g in scales]


def settings(scales: tuple[float, ...] = SWEEP_SCALES, grid: Grid = GRIDS["fmnist-64"]) -> list[Setting]:
    """Every setting, in run order (headline first; see the module docstring)."""
    h, n = grid.headline, grid.tokens
    out = [Setting("floor/train-real", "floor"), Setting("floor/train-recon", "floor")]
    out += [Setting(f"latency/batch={b}", "latency", extra={"batch": b}) for b in LATENCY_BATCHES]
    out += sweep(n, scales) + sweep(h, scales)
    out += [gen("random", n, inception=True), gen("raster", n, inception=True)]
    out += [gen(o, h, inception=True) for o in ORDERS]
    out += [gen(o, h, seed=SECOND_SEED) for o in ("locality", "random")]
    out += [Setting(f"fid/{gen_name(o, h, SECOND_SEED)}", "fid", h, o, SECOND_SEED) for o in ("locality", "random")]
    out += [gen("locality", h, tau=t, rho=r) for t, r in (PROXIMITY_ONLY, REPULSION_ONLY)]
    out += [gen("locality", h, tau=t, rho=r) for t in TAU_GRID for r in RHO_GRID if (t, r) != (1.0, 2.0)]
    out += [
        Setting(f"fid/{gen_name('locality', h, 0, t, r)}", "fid", h, "locality", tau=t, rho=r)
        for t, r in (PROXIMITY_ONLY, REPULSION_ONLY)
    ]  # the paper's ablation, by the metric that separates orders
    for k in grid.steps:
        if k != h:
            out += sweep(k, scales) + [gen(o, k) for o in ORDERS]
    out += [
        Setting("fid/floor/train-real", "fid", extra={"floor": "real"}),
        Setting("fid/floor/train-recon", "fid", extra={"floor": "recon"}),
    ]
    out += [
        Setting(f"best-thresholds/steps={k}", "generate", k, "locality", extra={"best_thresholds": True})
        for k in grid.steps
        if k != h
    ]
    return out


# --- metrics ------------------------------------------------------------------------------------------


@dataclass
class Context:
    """Everything the settings share: the model, the metric networks, the reference statistics."""

    args: argparse.Namespace
    grid: Grid
    store: ResultStore
    pipe: LPDPipeline
    classifier: FMNISTClassifier
    ref_test: FIDStatistics
    ref_train: FIDStatistics
    _inception: object = None
    _inception_ref: FIDStatistics | None = None
    _inception_recon: FIDStatistics | None = None

    def inception(self) -> tuple[object, FIDStatistics, FIDStatistics | None]:
        """The Inception network, the test split's statistics and (with the default reference) those of the
        test split's reconstructions by the model's tokenizer; shipped, or computed once and cached on disk."""
        if self._inception is None:
            from lpdgen.evaluation.inception import InceptionFeatures

            self._inception = InceptionFeatures()
            t0 = time.perf_counter()
            self._inception_ref, _, _ = reference_statistics(
                self.args.fid_reference, self._inception, cache_dir=self.args.fid_cache
            )
            if self.args.fid_reference == FMNIST_REFERENCE:
                self._inception_recon, _, _ = reference_statistics(
                    self.grid.recon_reference, self._inception, cache_dir=self.args.fid_cache
                )
            self.store.set_meta(
                inception_reference={"images": self._inception_ref.num, "seconds": time.perf_counter() - t0}
            )
        return self._inception, self._inception_ref, self._inception_recon

    def classifier_row(self, images: np.ndarray, labels: np.ndarray | None) -> dict:
        stats = feature_statistics(self.classifier.penultimate(images))
        row = {"fd_test": fid(stats, self.ref_test), "fd_train": fid(stats, self.ref_train), "num": len(images)}
        if labels is not None:
            pred = self.classifier.logits(images).argmax(1).numpy()
            row["accuracy"] = float((pred == labels).mean())
            row["accuracy_per_class"] = [float((pred[labels == c] == c).mean()) for c in range(10)]
        return row

    def inception_fid(self, images: np.ndarray, name: str) -> dict:
        """Inception FID of the first ``--num-fid`` images; with ``--inception-later`` the images are saved
        instead (``--images``), for a later run of the ``fid/`` settings on a machine with the weights."""
        if self.args.inception_later:
            save_images(self.args.images, name, images[: self.args.num_fid])
            return {"num_fid_saved": min(len(images), self.args.num_fid)}
        extractor, ref, recon = self.inception()
        stats = inception_stats(extractor, images[: self.args.num_fid], None)
        row = {"fid": fid(stats, ref), "num_fid": min(len(images), self.args.num_fid), "num_fid_reference": ref.num}
        return row if recon is None else {**row, "fid_recon": fid(stats, recon)}


def chosen_guidance(ctx: Context, steps: int) -> float:
    """The sweep's scale with the lowest FD train at ``steps`` (runs the sweep first if it is missing)."""
    rows = [s for s in settings(ctx.args.scales, ctx.grid) if s.kind == "sweep" and s.steps == steps]
    for s in rows:
        if s.name not in ctx.store:
            run_setting(ctx, s)
    best = min(rows, key=lambda s: ctx.store.results[s.name]["fd_train"])
    return best.guidance


def best_thresholds(ctx: Context) -> tuple[float, float]:
    """(tau, rho) of the headline-step locality row with the lowest FD train (published thresholds included)."""
    h = ctx.grid.headline
    rows = {
        k: v for k, v in ctx.store.results.items() if k.startswith(f"main/locality/steps={h}/") and v.get("seed") == 0
    }
    if not rows:
        raise ValueError(f"no {h}-step locality rows yet: run 'main/locality/steps={h}/*' first")
    best = min(rows.values(), key=lambda r: r["fd_train"])
    return best["tau"], best["rho"]


def sample(
    ctx: Context, s: Setting, num: int, guidance: float, tau: float, rho: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Thresholds go with the call: the pipeline's defaults stay the published ones for every later setting."""
    return generate(ctx.pipe, num, s.steps, guidance, s.order, s.seed, ctx.args.batch, tau=tau, rho=rho)


def run_generate(ctx: Context, s: Setting) -> dict:
    tau, rho = (s.tau, s.rho) if s.tau is not None else (ctx.pipe.sampling.tau, ctx.pipe.sampling.rho)
    if s.extra.get("best_thresholds"):
        tau, rho = best_thresholds(ctx)
    guidance = chosen_guidance(ctx, s.steps)
    images, labels, sec = sample(ctx, s, ctx.args.num, guidance, tau, rho)
    if s.order != "locality":  # the thresholds shape the locality-aware order only
        tau = rho = None
    row = {
        "order": s.order,
        "steps": s.steps,
        "seed": s.seed,
        "guidance": guidance,
        "tau": tau,
        "rho": rho,
        "sec_per_image": sec,
        **ctx.classifier_row(images, labels),
    }
    if s.inception:
        row.update(ctx.inception_fid(images, s.name))
    return row


def run_sweep(ctx: Context, s: Setting) -> dict:
    images, labels, sec = sample(ctx, s, ctx.args.sweep_num, s.guidance, ctx.pipe.sampling.tau, ctx.pipe.sampling.rho)
    return {
        "order": s.order,
        "steps": s.steps,
        "seed": s.seed,
        "guidance": s.guidance,
        "sec_per_image": sec,
        **ctx.classifier_row(images, labels),
    }


def floor_images(ctx: Context, which: str) -> tuple[np.ndarray, np.ndarray]:
    """The first ``--num`` training images (class-balanced enough: the split is shuffled), or their
    tokenizer reconstructions: what a perfect model, or a perfect model behind this tokenizer, would score."""
    data = FashionMNIST(split="train", pad_to=FASHION_MNIST_PAD)
    images, labels = data.images.numpy()[: ctx.args.num, ..., None], np.asarray(data.labels)[: ctx.args.num]
    return (images if which == "real" else reconstructions(ctx.pipe, images)), labels


def run_floor(ctx: Context, s: Setting) -> dict:
    which = s.name.rsplit("-", 1)[1]
    images, labels = floor_images(ctx, which)
    row = ctx.classifier_row(images, labels)
    row.pop("fd_train")  # these images are part of the training split: not a fair comparison
    return row


def run_fid(ctx: Context, s: Setting) -> dict:
    """Inception FID of a setting measured earlier without it (same images: same seeds and settings)."""
    if "floor" in s.extra:
        return ctx.inception_fid(floor_images(ctx, s.extra["floor"])[0], s.name)
    base_name = s.name.removeprefix("fid/")
    base = ctx.store.results.get(base_name)
    if base is None:
        raise ValueError(f"{s.name}: run {base_name} first")
    saved = load_images(ctx.args.images, base_name if "num_fid_saved" in base else s.name)
    if saved is None:
        saved, _, _ = sample(ctx, s, ctx.args.num_fid, base["guidance"], base["tau"], base["rho"])
    row = ctx.inception_fid(saved, s.name)
    if "num_fid_saved" in base and "fid" in row:  # the headline row gets its FID where it belongs
        ctx.store.add(base_name, {**base, **row})
    return row


def save_images(path: str | None, name: str, images: np.ndarray) -> None:
    """Add ``images`` under ``name`` to the .npz at ``path`` (rewritten atomically)."""
    if path is None:
        raise SystemExit("error: --inception-later needs --images FILE.npz")
    path = Path(path)
    stored = dict(np.load(path)) if path.is_file() else {}
    stored[name] = images
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **stored)
    tmp.replace(path)


def load_images(path: str | None, name: str) -> np.ndarray | None:
    if path is None or not Path(path).is_file():
        return None
    with np.load(path) as stored:
        return stored[name] if name in stored.files else None


def score_saved(ctx: Context) -> None:
    """The Inception FIDs (vs the test split and vs its reconstructions) of the rows measured with
    ``--inception-later`` that lack them, from the images they saved; ``--only``/``--skip`` select rows."""
    for name, row in list(ctx.store.results.items()):
        if "num_fid_saved" not in row or not selected(name, ctx.args.only, ctx.args.skip):
            continue
        if "fid" in row and ("fid_recon" in row or ctx.args.fid_reference != FMNIST_REFERENCE):
            continue
        images = load_images(ctx.args.images, name)
        if images is None:
            raise SystemExit(f"error: {ctx.args.images} holds no images of {name}")
        t0 = time.perf_counter()
        ctx.store.add(name, {**row, **ctx.inception_fid(images, name), "fid_elapsed_s": time.perf_counter() - t0})
        print(json.dumps({"setting": name, "fid": ctx.store.results[name]["fid"]}), flush=True)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_latency(ctx: Context, s: Setting) -> dict:
    """Median seconds of generation and of decoding per step count at one batch size, repeats interleaved
    over the step counts so that load changes on the shared machine hit every step count alike."""
    b = s.extra["batch"]
    labels, seeds = [i % 10 for i in range(b)], image_seeds(0, range(b))
    repeats = 5 if b == 1 else 3
    steps = ctx.grid.latency_steps
    times: dict[int, dict[str, list[float]]] = {k: {"generate": [], "decode": []} for k in steps}
    codes = {}

    def call(k: int):
        codes[k] = ctx.pipe(
            labels,
            num_inference_steps=k,
            guidance_scale=LATENCY_GUIDANCE,
            order="locality",
            seeds=seeds,
            output_type="codes",
        ).codes

    for k in steps:  # warm-up
        call(k)
    for _ in tqdm(range(repeats), desc=f"latency batch {b}", unit="round"):
        for k in steps:
            times[k]["generate"].append(timed(lambda: call(k)))
            times[k]["decode"].append(timed(lambda: ctx.pipe.decode(codes[k], "np")))
    rows = {str(k): {part: float(np.median(v)) for part, v in t.items()} for k, t in times.items()}
    return {"batch": b, "repeats": repeats, "guidance": LATENCY_GUIDANCE, "order": "locality", "seconds": rows}


RUNNERS = {"generate": run_generate, "sweep": run_sweep, "latency": run_latency, "floor": run_floor, "fid": run_fid}


def run_setting(ctx: Context, s: Setting) -> None:
    t0 = time.perf_counter()
    row = RUNNERS[s.kind](ctx, s)
    row["elapsed_s"] = time.perf_counter() - t0
    row["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    ctx.store.add(s.name, row)
    print(json.dumps({"setting": s.name, **{k: v for k, v in row.items() if k != "accuracy_per_class"}}), flush=True)


def reference_features(classifier: FMNISTClassifier, split: str, cache_dir: Path) -> FIDStatistics:
    """Classifier-feature statistics of a whole split (cached as .npy: the pass takes seconds, the cache
    keeps reruns instant)."""
    images = FashionMNIST(split=split, pad_to=FASHION_MNIST_PAD).images.numpy()[..., None]
    cache = cache_dir / f"classifier_features_{split}.npy"
    if cache.is_file():
        feats = np.load(cache)
    else:
        feats = classifier.penultimate(images)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, feats)
    return feature_statistics(feats)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default="docs/replication.json", help="result file (resumed when it exists)")
    p.add_argument("--only", nargs="*", default=[], help="run only settings matching these patterns")
    p.add_argument("--skip", nargs="*", default=[], help="skip settings matching these patterns")
    p.add_argument(
        "--redo",
        nargs="*",
        default=[],
        help="remeasure the settings matching these patterns even when the file has them (rows replaced)",
    )
    p.add_argument("--list", action="store_true", help="print the settings in run order and exit")
    p.add_argument("--num", type=int, default=5000, help="images per setting (classifier metrics)")
    p.add_argument("--num-fid", type=int, default=2000, help="images per Inception FID (the first of a setting)")
    p.add_argument("--sweep-num", type=int, default=1000, help="images per guidance-sweep scale")
    p.add_argument("--scales", type=float, nargs="+", default=list(SWEEP_SCALES), help="guidance sweep scales")
    p.add_argument("--batch", type=int, default=100, help="generation batch size")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--cache-dir", default="runs/replicate_cache", help="classifier features of the splits")
    p.add_argument(
        "--fid-reference",
        default=FMNIST_REFERENCE,
        help="Inception reference: 'fmnist' (the 10,000 test images) or an image .npz (smoke tests)",
    )
    p.add_argument("--fid-cache", default=None, help="Inception reference cache (default: lpdgen's)")
    p.add_argument("--model", default="fmnist-64", choices=sorted(GRIDS), help="embedded model to measure")
    p.add_argument("--device", default="cpu", help="generation device (the classifier runs on the CPU)")
    p.add_argument(
        "--inception-later",
        action="store_true",
        help="save the images of Inception rows to --images instead of scoring them (e.g. on a GPU "
        "machine without the Inception weights); the fid/ settings score them later",
    )
    p.add_argument("--images", default=None, help="the .npz of saved images (--inception-later)")
    p.add_argument(
        "--score-saved",
        action="store_true",
        help="first give every row whose images were saved (--inception-later) its Inception FID from --images",
    )
    args = p.parse_args(argv)
    for flag in ("num", "num_fid", "sweep_num"):
        if getattr(args, flag) < 10 or getattr(args, flag) % 10:
            raise SystemExit(
                f"error: --{flag.replace('_', '-')} must be a positive multiple of 10 (equal images per class)"
            )
    args.scales = tuple(args.scales)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    grid = GRIDS[args.model]
    todo = [s for s in settings(args.scales, grid) if selected(s.name, args.only, args.skip)]
    if args.inception_later:  # the fid/ rows of a run that saves images come in the later run
        todo = [s for s in todo if s.kind != "fid"]
    if args.list:
        print("\n".join(s.name for s in todo))
        return
    torch.set_num_threads(args.threads)
    store = ResultStore(args.json)
    store.set_meta(
        model=args.model,
        num=args.num,
        num_fid=args.num_fid,
        sweep_num=args.sweep_num,
        scales=list(args.scales),
        threads=args.threads,
        batch=args.batch,
        torch=torch.__version__,
        device=args.device,
    )
    redo = {s.name for s in todo if args.redo and selected(s.name, args.redo, [])}
    todo = [s for s in todo if s.name not in store or s.name in redo]
    print(f"{len(todo)} settings to run, results in {args.json}", flush=True)
    pipe = LPDPipeline.from_pretrained(args.model, device=args.device)
    classifier = FMNISTClassifier.from_checkpoint()
    cache = Path(args.cache_dir)
    ctx = Context(
        args,
        grid,
        store,
        pipe,
        classifier,
        reference_features(classifier, "test", cache),
        reference_features(classifier, "train", cache),
    )
    if args.score_saved:
        score_saved(ctx)
    for s in tqdm(todo, desc="settings", unit="setting"):
        if s.name not in store or s.name in redo:  # a sweep may have run as another setting's prerequisite
            run_setting(ctx, s)
            redo.discard(s.name)


if __name__ == "__main__":
    main()
