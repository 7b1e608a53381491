"""`lpdgen serve`: an HTTP service for one model that batches concurrent requests (:mod:`lpdgen.serving`).
FastAPI and uvicorn are imported only when the command runs (``pip install 'lpdgen[serve]'``)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .common import UserError, add_device_arg, add_model_args, load_pipeline
from .demo import add_listen_args, check_port_free


def register(sub: argparse._SubParsersAction) -> None:
    from ..serving import DEFAULT_MAX_BATCH, DEFAULT_MAX_QUEUE, DEFAULT_MAX_WAIT_MS

    p = sub.add_parser(
        "serve",
        help="an HTTP image service that batches concurrent requests (pip install 'lpdgen[serve]')",
        description="Serve one model over HTTP: POST /v1/images, GET /health, /v1/models, /metrics. "
        "Requests with the same settings that arrive close together are generated in "
        "one batch. SIGTERM or Ctrl-C stops taking requests, answers those in flight, "
        "then exits 0. See docs/serving.md.",
    )
    add_model_args(p)
    add_device_arg(p)
    add_listen_args(p, port=8000)
    p.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help="images per batch (one pipeline call); also the most images one request may ask for",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULT_MAX_WAIT_MS,
        metavar="MS",
        help="how long the oldest waiting request may wait for others to share its batch",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help="requests that may wait for a batch; further ones get 429 with Retry-After",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_batch < 1:
        raise UserError(f"--max-batch must be >= 1, got {args.max_batch}")
    if not (math.isfinite(args.max_wait_ms) and args.max_wait_ms >= 0):
        raise UserError(f"--max-wait-ms must be a finite number >= 0, got {args.max_wait_ms}")
    if args.max_queue < 1:
        raise UserError(f"--max-queue must be >= 1, got {args.max_queue}")
    check_port_free(args.host, args.port)
    from ..serving import INSTALL_HINT, ImageService, run_server

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    pipe = load_pipeline(args)  # before listening: a bad --model is one line and exit code 2, as in every command
    from ..embedded import DEFAULT_MODEL

    name = args.model or (Path(args.checkpoint).stem if args.checkpoint else DEFAULT_MODEL)
    service = ImageService(
        lambda: pipe, name=name, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue
    )
    print(f"lpdgen serve: http://{args.host}:{args.port} (POST /v1/images; SIGTERM or Ctrl-C stops it)", flush=True)
    run_server(service, args.host, args.port)
    return 0
