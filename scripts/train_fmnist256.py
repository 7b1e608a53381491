"""Train the 256-token Fashion-MNIST models from scratch: tokenizer (16x16 codes), token cache, LPD.

    python scripts/train_fmnist256.py --device cuda --out runs/fmnist256 --lpd-seconds 300   # one GPU: ~9 min
    python scripts/train_fmnist256.py --device cpu --out runs/fmnist256 --lpd-steps 6000     # 2 CPU cores: days

Every stage is an ordinary `lpdgen` command (printed before it runs), so any stage can be rerun by hand:

1. tokenizers: one per codebook size in ``--codebooks``, trained side by side (on a GPU they share it):
   a stage with dead-entry restarts, then a fine-tuning stage with the round-trip term (re-encoding a
   reconstruction should give back its codes), as for the 64-token tokenizer (docs/tokenizer.md);
2. the codebook: the smallest whose test PSNR is within ``--psnr-slack`` dB of the best one;
3. the token cache of the 60,000 training images and their flips with that tokenizer;
4. LPD: a short timed run measures the trainer's throughput, which sizes the real run to
   ``--lpd-seconds`` (or ``--lpd-steps`` when given), then the run itself with bf16 autocast.

``summary.json`` in ``--out`` records every measurement and the choices made.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LPD_MODEL = dict(
    width=192, depth=8, heads=6, num_classes=10, grid=[16, 16], dropout=0.1, label_drop=0.1, name="lpd-fmnist-256"
)


def tokenizer_config(codebook: int) -> dict:
    """16x16 codes from 32x32 images: one downsampling (2x2-pixel cells), 32 base channels."""
    return dict(
        image_channels=1,
        base_channels=32,
        channel_mult=[1, 2],
        num_res_blocks=1,
        z_channels=32,
        codebook_size=codebook,
        codebook_dim=8,
        norm_groups=8,
        usage_window=16384,
        image_size=32,
    )


def lpdgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "lpdgen.cli", *args]


def run_all(cmds: list[list[str]], logs: list[Path], timeout: float) -> list[int]:
    """Run commands side by side (each to its own log), wait for all; returns their exit codes. Past
    ``timeout`` each is interrupted as by Ctrl-C (the trainers then write a checkpoint), then killed."""
    procs = []
    for cmd, log in zip(cmds, logs):
        print("$", " ".join(cmd), ">", log, flush=True)
        procs.append(subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            codes.append(-2)
    return codes


def run(cmd: list[str], timeout: float, log: Path) -> int:
    return run_all([cmd], [log], timeout)[0]


def stage1_command(args, config: Path, out_dir: Path, steps: int) -> list[str]:
    return lpdgen(
        "train-tokenizer",
        "--config",
        str(config),
        "--out-dir",
        str(out_dir),
        "--steps",
        str(steps),
        "--batch-size",
        str(args.tok_batch),
        "--lr",
        "1e-3",
        "--data-root",
        args.data_root,
        "--device",
        args.device,
        "--no-eval",
        "--checkpoint-every",
        "1000",
    )


def train_tokenizers(args, out: Path, summary: dict) -> Path:
    dirs = {k: out / f"vq{k}" for k in args.codebooks}
    for k, d in dirs.items():
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(tokenizer_config(k)))
    steps = args.tok_steps
    if args.tok_seconds:  # size both stages to the time budget from a short timed run (start-up included)
        k = max(args.codebooks)
        code = run(stage1_command(args, dirs[k] / "config.json", out / "toktiming", 200), 300, out / "toktiming.log")
        timing = out / "toktiming" / "metrics.json"  # the loop's own seconds: start-up not included
        per_step = json.loads(timing.read_text())["train_seconds_this_run"] / 200 if timing.is_file() else 1.0
        per_step *= 1 + 0.5 * (len(dirs) - 1)  # side by side on one device: each runs slower
        steps = max(200, int(min(steps, args.tok_seconds / per_step)))
        summary["tokenizer_timing"] = {"seconds_per_step_side_by_side": round(per_step, 4), "exit": code}
    summary["tokenizer_steps"] = [steps, steps // 4]
    cmds = [stage1_command(args, d / "config.json", d / "stage1", steps) for d in dirs.values()]
    logs = [d / "stage1.log" for d in dirs.values()]
    t0 = time.perf_counter()
    codes1 = run_all(cmds, logs, args.tok_timeout)
    cmds, logs = [], []
    for d in dirs.values():
        cmds.append(
            lpdgen(
                "train-tokenizer",
                "--init-from",
                str(d / "stage1" / "vq.safetensors"),
                "--out-dir",
                str(d / "stage2"),
                "--steps",
                str(steps // 4),
                "--batch-size",
                str(args.tok_batch),
                "--lr",
                "3e-4",
                "--warmup-steps",
                "20",
                "--consistency-weight",
                "10",
                "--dead-code-every",
                "0",
                "--data-root",
                args.data_root,
                "--device",
                args.device,
                "--checkpoint-every",
                "1000",
            )
        )
        logs.append(d / "stage2.log")
    codes2 = run_all(cmds, logs, args.tok_timeout)
    summary["tokenizer_seconds"] = round(time.perf_counter() - t0, 1)
    results = {}
    for (k, d), c1, c2 in zip(dirs.items(), codes1, codes2):
        metrics = d / "stage2" / "metrics.json"
        results[k] = json.loads(metrics.read_text()) if metrics.is_file() else {"exit": [c1, c2]}
    summary["tokenizers"] = results
    good = {k: r for k, r in results.items() if "psnr" in r}
    if not good:
        raise SystemExit(f"no tokenizer finished: {results}")
    best = max(r["psnr"] for r in good.values())
    chosen = min(k for k, r in good.items() if r["psnr"] >= best - args.psnr_slack)
    summary["codebook"] = chosen
    print(f"tokenizers: {json.dumps(results)}; chosen codebook {chosen}", flush=True)
    return dirs[chosen] / "stage2" / "vq.safetensors"


def lpd_command(args, out_dir: Path, cache: Path, model_json: Path, steps: int) -> list[str]:
    return lpdgen(
        "train",
        "--data",
        str(cache),
        "--model",
        str(model_json),
        "--out-dir",
        str(out_dir),
        "--global-batch",
        str(args.lpd_batch),
        "--steps",
        str(steps),
        "--lr-unit",
        "step",
        "--warmup",
        str(min(200, steps // 10)),
        "--decay-start",
        str(steps // 2),
        "--base-lr",
        str(args.lpd_lr),
        "--min-lr",
        "2e-5",
        "--precision",
        args.precision,
        "--attention",
        args.attention,
        "--checkpoint-every",
        str(max(100, steps // 5)),
        "--keep-last",
        "1",
        "--log-every",
        "50" if steps > 200 else "10",
        "--no-tensorboard",
        "--device",
        args.device,
        "--resume",
        "auto",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/fmnist256")
    p.add_argument("--device", default="cuda")
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--codebooks", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--psnr-slack", type=float, default=1.0, help="dB below the best PSNR a smaller codebook may be")
    p.add_argument("--tok-steps", type=int, default=4000, help="most stage-1 steps (stage 2 runs a quarter)")
    p.add_argument("--tok-seconds", type=float, default=0, help="size stage 1 to about this long (0: --tok-steps)")
    p.add_argument("--tok-batch", type=int, default=128)
    p.add_argument("--tok-timeout", type=float, default=150, help="seconds allowed for each tokenizer stage")
    p.add_argument("--lpd-batch", type=int, default=256)
    p.add_argument("--lpd-lr", type=float, default=1.5e-3, help="base lr (x batch / 256)")
    p.add_argument("--lpd-seconds", type=float, default=300, help="size the LPD run to about this long")
    p.add_argument("--lpd-steps", type=int, default=0, help="exact LPD steps (0: from --lpd-seconds)")
    p.add_argument("--lpd-max-steps", type=int, default=8000)
    p.add_argument("--smoke-steps", type=int, default=60)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--attention", default="dense")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"args": vars(args), "lpd_model": LPD_MODEL}

    def save() -> None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))

    tok = train_tokenizers(args, out, summary)
    save()
    cache = out / "cache"
    t0 = time.perf_counter()
    code = run(
        lpdgen(
            "cache",
            "--tokenizer",
            str(tok),
            "--data-root",
            args.data_root,
            "--out",
            str(cache),
            "--batch-size",
            "1000",
            "--device",
            args.device,
        ),
        300,
        out / "cache.log",
    )
    summary["cache_seconds"] = round(time.perf_counter() - t0, 1)
    if code:
        raise SystemExit(f"cache failed ({code}); see {out / 'cache.log'}")
    model_json = out / "model.json"
    model_json.write_text(json.dumps({**LPD_MODEL, "vocab_size": summary["codebook"]}))
    save()

    steps = args.lpd_steps
    if not steps:
        code = run(lpd_command(args, out / "smoke", cache, model_json, args.smoke_steps), 240, out / "smoke.log")
        records = (
            [json.loads(line) for line in (out / "smoke" / "log.jsonl").read_text().splitlines() if "img_per_s" in line]
            if code == 0
            else []
        )
        if not records:
            raise SystemExit(f"the throughput run failed ({code}); see {out / 'smoke.log'}")
        img_per_s = records[-1]["img_per_s"]  # the last window: compiled / warmed up
        steps = int(min(args.lpd_max_steps, max(200, args.lpd_seconds * img_per_s / args.lpd_batch)))
        summary["smoke_img_per_s"] = round(img_per_s, 1)
    summary["lpd_steps"] = steps
    save()
    t0 = time.perf_counter()
    limit = 1.3 * args.lpd_seconds + 60 if not args.lpd_steps else 10 * 24 * 3600
    code = run(lpd_command(args, out / "lpd", cache, model_json, steps), limit, out / "lpd.log")
    summary["lpd_seconds"] = round(time.perf_counter() - t0, 1)
    summary["lpd_exit"] = code
    save()
    print(json.dumps(summary, indent=2), flush=True)
    if code:
        raise SystemExit(f"training exited with {code}; see {out / 'lpd.log'}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
