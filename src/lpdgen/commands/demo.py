"""`lpdgen demo`: serve the web page of :mod:`lpdgen.demo` (generate, compare, watch the decoding) on
this machine. Gradio is imported only here, and only when the command runs."""

from __future__ import annotations

import argparse
import logging
import socket
import tempfile
from pathlib import Path

from ..utils import get_logger
from .common import UserError, add_device_arg, add_model_args, load_pipeline

log = get_logger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from ..demo import DEFAULT_MAX_QUEUE

    p = sub.add_parser(
        "demo",
        help="a local web page to generate images and watch LPD decode (pip install 'lpdgen[demo]')",
        description="Serve a Gradio page: generate images of a class, compare step counts or "
        "orders, and watch the decoding step by step. One request runs at a time; "
        "the others wait in a bounded queue.",
    )
    add_model_args(p)
    add_device_arg(p)
    add_listen_args(p, port=7860)
    p.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help="requests that may wait while one runs; further ones are refused with 'queue is full'",
    )
    p.set_defaults(func=run)


def add_listen_args(parser: argparse.ArgumentParser, port: int) -> None:
    """``--host`` (this machine only, unless told otherwise) and ``--port``: shared by the commands that serve."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 serves every network interface (anyone who can reach "
        "this machine can then use the model)",
    )
    parser.add_argument("--port", type=int, default=port, help="port to listen on")


def check_port_free(host: str, port: int) -> None:
    """Refuse a port that is out of range or taken, before the model loads."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be in [1, 65535], got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(
                f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); choose another --port"
            ) from None


def run(args: argparse.Namespace) -> int:
    from ..demo import build_app, import_gradio

    if args.max_queue < 1:
        raise UserError(f"--max-queue must be >= 1, got {args.max_queue}")
    check_port_free(args.host, args.port)
    try:
        import_gradio()
    except ImportError as e:
        raise UserError(str(e)) from None
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own health checks, one line each otherwise
    pipe = load_pipeline(args)
    pipe([0], num_inference_steps=1, seeds=[0], output_type="np")  # warm up: the first click is not slower
    with tempfile.TemporaryDirectory(prefix="lpdgen-demo-") as workdir:
        app = build_app(pipe, workdir=Path(workdir), max_queue=args.max_queue)
        print(f"lpdgen demo: http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
        app.launch(server_name=args.host, server_port=args.port, quiet=True, show_error=False)
    return 0
