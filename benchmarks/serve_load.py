"""Load test of `lpdgen serve`: does batching concurrent requests turn into images per second?

    python benchmarks/serve_load.py                                  # 1, 8, 32, 128 clients; about 5-10 min on 2 cores
    python benchmarks/serve_load.py --clients 1 32 --requests 32     # quicker

Starts ``lpdgen serve`` (a subprocess on a free port of 127.0.0.1, stopped at the end whatever happens)
and sends bounded, closed-loop load: at each level, N clients each send a request, wait for its answer,
send the next, until the level's requests (``max(--requests, 2 x clients)``) are all answered. Two
workloads: one image per request, and 1-4 images per request. The reference is the same requests run
one at a time through ``LPDPipeline`` in this process, measured right before each level while the
server idles (on a shared machine the load drifts; each ratio compares neighbours in time). Checks that every request is answered once with its own seeds, and
that the server's images of the reference requests are bit for bit the pipeline's.

Wall-clock rates on a shared machine swing with its load; the CPU seconds per image of the server
process and of the one-at-a-time loop are reported beside them (they measure the work, not the wait).
Writes ``--json`` (numbers, load averages) and ``--plot`` (pillow, the helper of replicate_report.py).
Needs ``pip install 'lpdgen[serve-test]'`` (httpx).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result  # noqa: E402  (sibling benchmark module)

SRC = str(Path(__file__).resolve().parents[1] / "src")
WORKLOADS = {"1 image": (1, 1), "1-4 images": (1, 4)}


def make_requests(n: int, images: tuple[int, int], num_classes: int, seed: int) -> list[dict]:
    """``n`` requests with unique seeds (so answers can be matched to requests)."""
    rnd = random.Random(seed)
    out, next_seed = [], seed * 1_000_000
    for _ in range(n):
        k = rnd.randint(*images)
        out.append(
            {"classes": [rnd.randrange(num_classes) for _ in range(k)], "seeds": list(range(next_seed, next_seed + k))}
        )
        next_seed += k
    return out


def pixels(files: list[str]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(f)))) for f in files])


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_at_a_time(pipe, requests: list[dict]) -> tuple[float, list[float], list[np.ndarray], float]:
    """Images per second, per-request seconds, the images of ``requests`` run one by one through the
    pipeline, and the CPU seconds per image this took."""
    times, images = [], []
    cpu0 = process_cpu_s(os.getpid())
    for r in requests:
        t0 = time.perf_counter()
        out = pipe(r["classes"], seeds=r["seeds"], output_type="np")
        times.append(time.perf_counter() - t0)
        images.append(out.images[..., 0] if out.images.shape[-1] == 1 else out.images)
    n = sum(len(r["classes"]) for r in requests)
    return n / sum(times), times, images, (process_cpu_s(os.getpid()) - cpu0) / n


async def run_level(url: str, requests: list[dict], clients: int) -> dict:
    """Closed loop: ``clients`` workers share the request list; each sends, awaits the answer, sends the next."""
    import httpx

    answers: list[tuple[int, float, dict]] = []
    queue = list(enumerate(requests))[::-1]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while queue:
                i, body = queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/v1/images", json=body)
                answers.append(
                    (i, time.perf_counter() - t0, r.json() if r.status_code == 200 else {"status": r.status_code})
                )

        before = await scrape(url)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
        after = await scrape(url)
    ok = [a for a in answers if "images" in a[2]]
    sent = sorted(s for r in requests for s in r["seeds"])
    got = sorted(s for _, _, body in ok for s in body["seeds"])
    matched = all(
        body["seeds"] == requests[i]["seeds"] and len(body["images"]) == len(requests[i]["classes"])
        for i, _, body in ok
    )
    lat = sorted(t for _, t, _ in answers)
    batches = after["lpdgen_batches_total"] - before["lpdgen_batches_total"]
    return {
        "clients": clients,
        "requests": len(requests),
        "answered_ok": len(ok),
        "seeds_match": got == sent and matched,
        "images": len(sent),
        "seconds": wall,
        "images_per_s": len(sent) / wall,
        "p50_s": statistics.median(lat),
        "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "batches": batches,
        "mean_batch_images": (after["lpdgen_batch_images_sum"] - before["lpdgen_batch_images_sum"]) / max(batches, 1),
        "mean_batch_s": (after["lpdgen_generation_seconds_sum"] - before["lpdgen_generation_seconds_sum"])
        / max(batches, 1),
        "answers": {i: body for i, _, body in ok},
    }


async def scrape(url: str) -> dict[str, float]:
    """``GET /metrics`` on a connection of its own: an idle pooled connection that the server closes after
    its keep-alive time would fail the next request sent on it."""
    import httpx

    async with httpx.AsyncClient(base_url=url) as client:
        text = (await client.get("/metrics")).text
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, args: argparse.Namespace, log: Path) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable,
        "-m",
        "lpdgen.cli",
        "serve",
        "--port",
        str(port),
        "--max-batch",
        str(args.max_batch),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--max-queue",
        str(max(256, 2 * max(args.clients))),
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"lpdgen serve did not start:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def plot(result: dict, path: Path) -> Path:
    from replicate_report import line_panels  # sibling benchmark script: the project's pillow line charts

    levels = result["levels"]
    throughput, latency = {}, {}
    for w in WORKLOADS:
        rows = [r for r in levels if r["workload"] == w]
        throughput[f"server, {w}"] = [(r["clients"], r["images_per_s"]) for r in rows]
        throughput[f"one at a time, {w}"] = [(r["clients"], r["reference_images_per_s"]) for r in rows]
        latency[f"p50, {w}"] = [(r["clients"], r["p50_s"]) for r in rows]
        latency[f"p99, {w}"] = [(r["clients"], r["p99_s"]) for r in rows]
    panels = [
        {"title": "throughput (images/s)", "x_label": "concurrent clients", "series": throughput},
        {"title": "latency per request (s)", "x_label": "concurrent clients", "series": latency},
    ]
    return line_panels(
        panels, path, title=f"lpdgen serve, embedded model, {result['cpus']} CPU cores (shared, loaded)", panel_w=520
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--requests", type=int, default=64, help="requests per level (at least 2 per client)")
    p.add_argument("--reference", type=int, default=16, help="requests run one at a time before each level")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=20.0)
    p.add_argument("--json", default="docs/serving_load_cpu.json")
    p.add_argument("--plot", default="docs/serving_load.png")
    args = p.parse_args(argv)

    from lpdgen import LPDPipeline

    pipe = LPDPipeline.from_pretrained("fmnist-64")  # the model of docs/serving.md's figures
    # The reference calls the pipeline from one worker thread, as the server does: on this shared machine,
    # calls from a process's main thread were seen to cost up to 10x the CPU time under load.
    model_thread = ThreadPoolExecutor(max_workers=1)
    model_thread.submit(pipe, [0], seeds=[0], output_type="np").result()  # builds the schedule's cached masks
    most = max(max(args.requests, 2 * c) for c in args.clients)
    work = {
        w: make_requests(max(most, args.reference), images, pipe.model.cfg.num_classes, seed=k + 1)
        for k, (w, images) in enumerate(WORKLOADS.items())
    }
    port, log = free_port(), Path(args.json).with_suffix(".log")
    proc = start_server(port, args, log)
    levels = []
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(run_level(url, make_requests(args.max_batch, (1, 1), 10, seed=99), args.max_batch))  # warm-up
        for w, reqs in work.items():
            for c in args.clients:
                # the reference right before each level, while the server idles: the ratio is of neighbours in time
                load = os.getloadavg()[0]
                ref_rate, ref_times, ref_images, ref_cpu = model_thread.submit(
                    one_at_a_time, pipe, reqs[: args.reference]
                ).result()
                cpu0 = process_cpu_s(proc.pid)
                row = asyncio.run(run_level(url, reqs[: max(args.requests, 2 * c)], c))
                row["server_cpu_s_per_image"] = (process_cpu_s(proc.pid) - cpu0) / row["images"]
                answers = row.pop("answers")
                row.update(
                    workload=w,
                    load_average_1min=[load, os.getloadavg()[0]],
                    reference_images_per_s=ref_rate,
                    reference_p50_s=statistics.median(ref_times),
                    reference_cpu_s_per_image=ref_cpu,
                    cpu_speedup=ref_cpu / row["server_cpu_s_per_image"],
                    speedup=row["images_per_s"] / ref_rate,
                    p99_over_batch=row["p99_s"] / row["mean_batch_s"] if row["mean_batch_s"] else None,
                    bit_exact=all(
                        np.array_equal(pixels(answers[i]["images"]), img)
                        for i, img in enumerate(ref_images)
                        if i in answers
                    ),
                )
                levels.append(row)
                print(
                    f"{w:>10}, {c:3d} clients: {row['images_per_s']:6.2f} images/s ({row['speedup']:.1f}x one at a "
                    f"time: {ref_rate:.2f}; CPU s per image {ref_cpu / row['cpu_speedup']:.3f} vs {ref_cpu:.3f}), p50 {row['p50_s']:.2f} s, p99 {row['p99_s']:.2f} s, {row['batches']:.0f} "
                    f"batches of {row['mean_batch_images']:.1f} images ({row['mean_batch_s']:.2f} s), all answered "
                    f"{row['answered_ok'] == row['requests']}, seeds match {row['seeds_match']}, bit-exact "
                    f"{row['bit_exact']}",
                    file=sys.stderr,
                )
    finally:
        code = stop_server(proc)
    import torch

    result = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "reference_requests": args.reference,
        "server_exit_code": code,
        "levels": levels,
    }
    write_result(args.json, result)
    print(f"wrote {args.json} and {plot(result, Path(args.plot))}", file=sys.stderr)
    print(
        "| workload | clients | images/s | one at a time (images/s) | speed-up | CPU s / image: server, one at a time "
        "| p50 (s) | p99 (s) | batches x images | batch (s) | p99 / batch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in levels:
        print(
            f"| {r['workload']} | {r['clients']} | {r['images_per_s']:.2f} | {r['reference_images_per_s']:.2f} | "
            f"{r['speedup']:.1f}x | {r['server_cpu_s_per_image']:.3f}, {r['reference_cpu_s_per_image']:.3f} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | {r['batches']:.0f} x "
            f"{r['mean_batch_images']:.1f} | {r['mean_batch_s']:.2f} | {r['p99_over_batch']:.1f} |"
        )


if __name__ == "__main__":
    main()
