"""The one command line: ``lpdgen <command>``.

Each command lives in ``lpdgen/commands/<name>.py`` with ``register(subparsers)``, which adds its
parser and sets ``func(args) -> int``. Keeping parsers beside their commands (not in the library
modules) keeps the math modules free of argparse; keeping one dispatcher keeps one CLI.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .utils import setup_logging

# Command modules under lpdgen.commands, in the order `lpdgen --help` lists them.
COMMANDS: tuple[str, ...] = (
    "info",
    "sample",
    "train",
    "train_tokenizer",
    "cache",
    "orders",
    "eval",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpdgen", description="Locality-aware Parallel Decoding for image generation")
    parser.add_argument("--version", action="version", version=f"lpdgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"lpdgen.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lpdgen`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"lpdgen {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
