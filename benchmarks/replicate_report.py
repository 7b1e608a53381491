"""Tables, plots and sample grids of docs/replication.md from the result file of benchmarks/replicate.py.

    python benchmarks/replicate_report.py                       # docs/replication.json -> docs/replication_*.png + tables
    python benchmarks/replicate_report.py --no-samples          # plots and tables only (no generation)

Prints the markdown tables (rows not measured yet show as "pending") and writes, with pillow only:
``replication_quality.png`` (classifier Frechet distance and class accuracy vs steps, one line per order
type), ``replication_speedup.png`` (speed-up of each step count over one token per step, vs batch size)
and ``replication_samples.png`` (the same seeds in 64 steps, random order, and in 8 steps, locality order,
each at its chosen guidance).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from lpdgen.images import label_image, labelled_grid
from lpdgen.io import atomic_write

sys.path.insert(0, str(Path(__file__).parent))
from replicate import (  # noqa: E402  (sibling benchmark script)
    GRIDS,
    LATENCY_BATCHES,
    ORDERS,
    PROXIMITY_ONLY,
    REPULSION_ONLY,
    RHO_GRID,
    SECOND_SEED,
    TAU_GRID,
    Grid,
    gen_name,
)

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (90, 90, 90)]
PENDING = "pending"


def fmt(row: dict | None, key: str, spec: str = ".2f", scale: float = 1.0, unit: str = "") -> str:
    """One table cell: "pending" before the row is measured, "-" where the row has no such value."""
    if row is None:
        return PENDING
    return "-" if key not in row else f"{scale * row[key]:{spec}}{unit}"


def pct(row: dict | None, key: str = "accuracy") -> str:
    return fmt(row, key, ".1f", 100, "%")


# --- plots (pillow) -----------------------------------------------------------------------------------


def line_panels(panels: list[dict], path: Path, title: str = "", panel_w: int = 460, h: int = 360) -> Path:
    """Side-by-side line charts on a log2 x axis. Each panel: ``title``, ``x_label``, ``series``
    (label -> [(x, y), ...]) and optionally ``y_format`` (e.g. "{:.0f}x") and ``from_zero`` (default True)."""
    from PIL import Image, ImageDraw

    left, right, top, bottom = 56, 16, 48, 70
    img = Image.new("RGB", (panel_w * len(panels), h + 20), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 4), title, fill="black")
    for p, panel in enumerate(panels):
        pts = [xy for s in panel["series"].values() for xy in s]
        if not pts:
            continue
        xs, ys = [math.log2(x) for x, _ in pts], [y for _, y in pts]
        x_lo, x_hi = min(xs), max(xs) + 1e-9
        span = max(ys) - min(ys) + 1e-9
        y_lo = min(0.0, min(ys)) if panel.get("from_zero", True) else min(ys) - 0.15 * span
        y_hi = max(ys) + 0.1 * (max(ys) - y_lo) + 1e-9
        x0, w, hh = p * panel_w + left, panel_w - left - right, h - top - bottom

        def at(x: float, y: float) -> tuple[float, float]:
            return x0 + w * (math.log2(x) - x_lo) / (x_hi - x_lo), top + hh * (1 - (y - y_lo) / (y_hi - y_lo))

        draw.text((x0, top - 28), panel["title"], fill="black")
        draw.line([(x0, top), (x0, top + hh), (x0 + w, top + hh)], fill="black")
        for x in sorted({x for x, _ in pts}):
            px = at(x, y_lo)[0]
            draw.line([(px, top + hh), (px, top + hh + 4)], fill="black")
            draw.text((px - 6, top + hh + 6), f"{x:g}", fill="black")
        draw.text((x0 + w // 2 - 30, top + hh + 20), panel["x_label"], fill="black")
        for i in range(5):
            y = y_lo + (y_hi - y_lo) * i / 4
            py = at(2**x_lo, y)[1]
            draw.line([(x0 - 4, py), (x0, py)], fill="black")
            draw.text((4 + p * panel_w, py - 6), panel.get("y_format", "{:.3g}").format(y), fill="black")
        for j, (label, series) in enumerate(panel["series"].items()):
            colour = COLOURS[j % len(COLOURS)]
            xy = [at(x, y) for x, y in sorted(series)]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            for px, py in xy:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            lx = x0 + (j % 3) * (w // 3)
            ly = top + hh + 36 + (j // 3) * 14
            draw.rectangle([lx, ly + 2, lx + 10, ly + 10], fill=colour)
            draw.text((lx + 14, ly), label, fill="black")
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def quality_plot(results: dict, path: Path, grid: Grid) -> Path | None:
    n = grid.tokens
    series = {"fd_test": {}, "accuracy": {}, "fid": {}}
    for o in ORDERS:
        for key in series:
            series[key][o] = [(k, r[key]) for k in (*grid.steps, n) if (r := results.get(gen_name(o, k))) and key in r]
    if not any(series["fd_test"].values()):
        return None
    series["accuracy"] = {o: [(k, 100 * a) for k, a in pts] for o, pts in series["accuracy"].items()}
    return line_panels(
        [
            {
                "title": "FD, classifier features, 5,000 images (lower is better)",
                "x_label": "steps",
                "series": series["fd_test"],
            },
            {
                "title": "Inception FID, 2,000 images (lower is better)",
                "x_label": "steps",
                "series": series["fid"],
                "from_zero": False,
            },
            {
                "title": "class accuracy, % (shipped classifier)",
                "x_label": "steps",
                "series": series["accuracy"],
                "from_zero": False,
            },
        ],
        path,
        title=f"Embedded Fashion-MNIST LPD ({n} tokens): quality vs steps per order type, against the test split "
        f"({n} steps = one token per step)",
    )


def speedup_plot(results: dict, path: Path, grid: Grid) -> Path | None:
    rows = {b: results.get(f"latency/batch={b}") for b in LATENCY_BATCHES}
    gen_series, total_series = {}, {}
    for k in grid.latency_steps[:-1]:
        gen_series[f"{k} steps"], total_series[f"{k} steps"] = [], []
        for b, r in rows.items():
            if r:
                t, ref = r["seconds"][str(k)], r["seconds"][str(grid.tokens)]
                gen_series[f"{k} steps"].append((b, ref["generate"] / t["generate"]))
                total_series[f"{k} steps"].append(
                    (b, (ref["generate"] + ref["decode"]) / (t["generate"] + t["decode"]))
                )
    if not any(gen_series.values()):
        return None
    return line_panels(
        [
            {
                "title": f"speed-up over {grid.tokens} steps: generation",
                "x_label": "batch size",
                "series": gen_series,
                "y_format": "{:.1f}x",
            },
            {
                "title": f"speed-up over {grid.tokens} steps: generation + decode",
                "x_label": "batch size",
                "series": total_series,
                "y_format": "{:.1f}x",
            },
        ],
        path,
        title="Latency (batch 1) and throughput (larger batches) on 2 shared CPU cores, medians of interleaved repeats",
    )


def sample_grids(results: dict, path: Path, grid: Grid, model: str, per_class: int = 6) -> Path | None:
    """The same 10 x ``per_class`` seeds in one token per step and in the model's own locality-aware steps."""
    from lpdgen.classes import default_class_names
    from lpdgen.pipeline import LPDPipeline
    from lpdgen.rng import image_seeds

    panels = []
    for order, steps in (("random", grid.tokens), ("locality", grid.headline)):
        row = results.get(gen_name(order, steps))
        if row is None:
            return None
        pipe = LPDPipeline.from_pretrained(model)
        idx = [c + 10 * j for c in range(10) for j in range(per_class)]  # image i has class i % 10: rows by class
        out = pipe(
            [i % 10 for i in idx],
            num_inference_steps=steps,
            guidance_scale=row["guidance"],
            order=order,
            seeds=image_seeds(0, idx),
            output_type="np",
        )
        names = default_class_names(10) if pipe.class_names is None else pipe.class_names
        panels.append(
            labelled_grid(
                out.images, list(names), per_class, title=f"{steps} steps, {order} order, guidance {row['guidance']:g}"
            )
        )
    gap = np.full((panels[0].shape[0], 16, 3), 255, np.uint8)
    mosaic = np.concatenate([panels[0], gap, panels[1]], axis=1)
    mosaic = label_image(mosaic, "same seeds (image_seed(0, i)), same classes")
    from lpdgen.images import save_png

    return save_png(mosaic, path)


# --- why an order helps: its neighbourhood statistics -------------------------------------------------

NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def order_statistics(steps: int, num: int = 500, grid: int = 8, thresholds: bool = True) -> list[dict]:
    """Per order type (and threshold variant): for the cell generated at each step, the mean number of its
    8 neighbours already generated (context it is conditioned on) and of its neighbours generated in the
    same step (sampled independently of it). A good parallel order has much of the first, little of the
    second. Computed from the orders alone (seeds ``image_seed(0, i)``), no images."""
    from lpdgen.orders import build_orders, group_sizes
    from lpdgen.orders.draw import step_map
    from lpdgen.rng import generator, image_seeds

    sizes = group_sizes(grid * grid, steps)
    variants = [(o, None, None) for o in ORDERS]
    if thresholds:
        variants += [("locality", *PROXIMITY_ONLY), ("locality", *REPULSION_ONLY)]
        variants += [("locality", t, r) for t in TAU_GRID for r in RHO_GRID if (t, r) != (1.0, 2.0)]
    rows = []
    for order, tau, rho in variants:
        kw = {} if tau is None else {"tau": tau, "rho": rho}
        orders = build_orders(order, grid, sizes, seed=[generator(s) for s in image_seeds(0, range(num))], **kw)
        maps = np.stack([step_map(o, sizes, grid) for o in orders])  # (B, h, w) step of each cell
        padded = np.pad(maps, ((0, 0), (1, 1), (1, 1)), constant_values=0)  # 0: off the grid
        before = same = 0.0
        for dy, dx in NEIGHBOURS:
            shifted = padded[:, 1 + dy : 1 + dy + grid, 1 + dx : 1 + dx + grid]
            before += ((shifted > 0) & (shifted < maps)).mean()
            same += (shifted == maps).mean()
        rows.append(
            {
                "order": order,
                "steps": steps,
                "tau": tau,
                "rho": rho,
                "context_neighbours": float(before),
                "same_step_neighbours": float(same),
            }
        )
    return rows


def order_statistics_by_steps(grid: Grid, num: int = 200) -> str:
    """Context / same-step neighbours of the four order types at every step count of the grid."""
    side = math.isqrt(grid.tokens)
    stats = {k: {r["order"]: r for r in order_statistics(k, num, side, thresholds=False)} for k in grid.steps}
    out = ["| steps | " + " | ".join(ORDERS) + " |", "|---|" + "---|" * len(ORDERS)]
    for k in grid.steps:
        out.append(
            f"| {k} | "
            + " | ".join(
                f"{stats[k][o]['context_neighbours']:.2f} / {stats[k][o]['same_step_neighbours']:.2f}" for o in ORDERS
            )
            + " |"
        )
    return "\n".join(out)


def order_statistics_table(rows: list[dict]) -> str:
    out = [
        "| order | tau | rho | generated neighbours before a token's step | neighbours in its own step |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        tau = "-" if r["tau"] is None else f"{r['tau']:g}"
        rho = "-" if r["rho"] is None else f"{r['rho']:g}"
        if r["order"] == "locality" and r["tau"] is None:
            tau, rho = "1", "2"
        out.append(
            f"| {r['order']} | {tau} | {rho} | {r['context_neighbours']:.2f} | {r['same_step_neighbours']:.2f} |"
        )
    return "\n".join(out)


# --- tables -------------------------------------------------------------------------------------------


def tables(data: dict, grid: Grid) -> str:
    res, out = data["results"], []
    h, n = grid.headline, grid.tokens
    out.append("### Headline rows\n")
    out.append(
        "| steps | order | guidance | class accuracy | FD test (classifier) | FD train | Inception FID (2,000 vs test) | s per image |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for o, k in [("random", n), ("raster", n)] + [(o, h) for o in ORDERS]:
        r = res.get(gen_name(o, k))
        out.append(
            f"| {k} | {o} | {fmt(r, 'guidance', 'g')} | {pct(r)} | {fmt(r, 'fd_test')} | "
            f"{fmt(r, 'fd_train')} | {fmt(r, 'fid')} | {fmt(r, 'sec_per_image', '.3f')} |"
        )
    for name, label in (
        ("floor/train-real", "real training images"),
        ("floor/train-recon", "their tokenizer reconstructions"),
    ):
        r, f = res.get(name), res.get(f"fid/{name}")
        out.append(f"| - | {label} | - | {pct(r)} | {fmt(r, 'fd_test')} | - | {fmt(f, 'fid')} | - |")
    out.append("\n### Second seed (spread)\n")
    out.append("| setting | seed 0: FD test / accuracy / FID | seed 1: FD test / accuracy / FID |")
    out.append("|---|---|---|")
    for o in ("locality", "random"):
        a, b = res.get(gen_name(o, h)), res.get(gen_name(o, h, SECOND_SEED))
        fb = res.get(f"fid/{gen_name(o, h, SECOND_SEED)}")
        out.append(
            f"| {o}, {h} steps | {fmt(a, 'fd_test')} / {pct(a)} / {fmt(a, 'fid')} | "
            f"{fmt(b, 'fd_test')} / {pct(b)} / {fmt(fb, 'fid')} |"
        )
    out.append("\n### Steps x order: FD test (classifier features), class accuracy in brackets\n")
    out.append("| steps | guidance | " + " | ".join(ORDERS) + " |")
    out.append("|---|---|" + "---|" * len(ORDERS))
    for k in grid.steps:
        cells = [res.get(gen_name(o, k)) for o in ORDERS]
        g = next((c["guidance"] for c in cells if c), None)
        out.append(
            f"| {k} | {PENDING if g is None else f'{g:g}'} | "
            + " | ".join(PENDING if c is None else f"{c['fd_test']:.2f} ({100 * c['accuracy']:.1f}%)" for c in cells)
            + " |"
        )
    out.append(f"\n### {h}-step locality-aware variants (ranked by FD train; FD test reported only)\n")
    out.append("| tau | rho | variant | FD train | FD test | class accuracy |")
    out.append("|---|---|---|---|---|---|")
    variants = [
        (1.0, 2.0, "published thresholds"),
        (*PROXIMITY_ONLY, "proximity only"),
        (*REPULSION_ONLY, "repulsion only"),
    ]
    variants += [(t, r, "grid") for t in TAU_GRID for r in RHO_GRID if (t, r) != (1.0, 2.0)]
    for t, r, label in variants:
        name = gen_name("locality", h) if label.startswith("published") else gen_name("locality", h, 0, t, r)
        row = res.get(name)
        if label != "grid" and res.get(f"fid/{name}"):  # the ablation rows' Inception FIDs
            row = {**row, **res[f"fid/{name}"]} if row else row
        out.append(f"| {t:g} | {r:g} | {label} | {fmt(row, 'fd_train')} | {fmt(row, 'fd_test')} | {pct(row)} |")
    best = [(k, res.get(f"best-thresholds/steps={k}")) for k in grid.steps if k != h]
    if any(r for _, r in best):
        out.append("\nlocality-aware with the thresholds of the best FD-train row, other step counts:\n")
        out.append("| steps | tau | rho | FD test | class accuracy |")
        out.append("|---|---|---|---|---|")
        for k, r in best:
            out.append(f"| {k} | {fmt(r, 'tau', 'g')} | {fmt(r, 'rho', 'g')} | {fmt(r, 'fd_test')} | {pct(r)} |")
    out.append("\n### Guidance sweeps (random order, seed 100, FD against the training split)\n")
    sweeps: dict[int, dict[float, dict]] = {}
    for name, r in res.items():
        if name.startswith("sweep/"):
            sweeps.setdefault(r["steps"], {})[r["guidance"]] = r
    scales = sorted({g for s in sweeps.values() for g in s})
    out.append("| steps | " + " | ".join(f"g = {g:g}" for g in scales) + " |")
    out.append("|---|" + "---|" * len(scales))
    for k in sorted(sweeps):
        best_g = min(sweeps[k], key=lambda g: sweeps[k][g]["fd_train"])
        out.append(
            f"| {k} | "
            + " | ".join(
                "-"
                if g not in sweeps[k]
                else (f"**{sweeps[k][g]['fd_train']:.2f}**" if g == best_g else f"{sweeps[k][g]['fd_train']:.2f}")
                + (f" ({100 * sweeps[k][g]['accuracy']:.0f}%)" if g in sweeps[k] else "")
                for g in scales
            )
            + " |"
        )
    lat = grid.latency_steps
    out.append(f"\n### Latency (median seconds per call: generation + decode; speed-up over {n} steps)\n")
    out.append("| batch | " + " | ".join(f"{k} steps" for k in lat) + " |")
    out.append("|---|" + "---|" * len(lat))
    for b in LATENCY_BATCHES:
        r = res.get(f"latency/batch={b}")
        if r is None:
            out.append(f"| {b} | " + " | ".join([PENDING] * len(lat)) + " |")
            continue
        sec = r["seconds"]
        ref = sec[str(n)]["generate"] + sec[str(n)]["decode"]
        out.append(
            f"| {b} | "
            + " | ".join(
                f"{sec[str(k)]['generate']:.3f} + {sec[str(k)]['decode']:.3f} ({ref / (sec[str(k)]['generate'] + sec[str(k)]['decode']):.1f}x)"
                for k in lat
            )
            + " |"
        )
    elapsed = sum(r.get("elapsed_s", 0.0) for r in res.values())
    ref_s = data.get("meta", {}).get("inception_reference", {}).get("seconds", 0.0)
    out.append(
        f"\n{len(res)} settings measured; their run times add up to {elapsed / 3600:.2f} h, including "
        f"{ref_s / 60:.0f} min for the Inception statistics of the test split (computed once, in the first FID row)."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default="docs/replication.json", help="result file; its meta names the model")
    p.add_argument("--out-dir", default="docs")
    p.add_argument("--no-samples", action="store_true", help="skip the sample grids (they generate 120 images)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--order-stats", action="store_true", help="also the neighbourhood statistics of the 8-step orders")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    data = json.loads(Path(args.json).read_text())
    model = data.get("meta", {}).get("model", "fmnist-64")
    grid = GRIDS[model]
    prefix = "replication" if model == "fmnist-64" else f"replication{grid.tokens}"
    out = Path(args.out_dir)
    for made in (
        quality_plot(data["results"], out / f"{prefix}_quality.png", grid),
        speedup_plot(data["results"], out / f"{prefix}_speedup.png", grid),
        None if args.no_samples else sample_grids(data["results"], out / f"{prefix}_samples.png", grid, model),
    ):
        if made is not None:
            print(f"wrote {made}", file=sys.stderr)
    print(tables(data, grid))
    if args.order_stats:
        side = math.isqrt(grid.tokens)
        print(f"\n### Neighbourhood statistics of {grid.headline}-step orders ({side}x{side} grid, 500 orders each)\n")
        print(order_statistics_table(order_statistics(grid.headline, grid=side)))
        print("\nThe four order types at every step count (context / same-step neighbours, 200 orders each):\n")
        print(order_statistics_by_steps(grid))


if __name__ == "__main__":
    main()
