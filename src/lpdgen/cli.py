"""The one command line: ``lpdgen <command>``.

Each command lives in ``lpdgen/commands/<name>.py`` with ``register(subparsers)``, which adds its
parser and sets ``func(args) -> int``. Keeping parsers beside their commands (not in the library
modules) keeps the math modules free of argparse; keeping one dispatcher keeps one CLI.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from . import __version__
from .commands.common import USER_ERRORS, HelpFormatter, UserError, one_line
from .utils import setup_logging

# Command modules under lpdgen.commands, in the order `lpdgen --help` lists them.
COMMANDS: tuple[str, ...] = (
    "info",
    "sample",
    "edit",
    "train",
    "train_tokenizer",
    "cache",
    "orders",
    "eval",
    "bench",
    "demo",
    "serve",
)

DEBUG_ENV = "LPDGEN_DEBUG"
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT


class Parser(argparse.ArgumentParser):
    """argparse with the project's help formatter and one-line usage errors (exit code 2), like every
    other user mistake; ``--help`` still prints the full usage."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lpdgen", description="Locality-aware Parallel Decoding for image generation")
    parser.add_argument("--version", action="version", version=f"lpdgen {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help=f"show full tracebacks for every error (or set {DEBUG_ENV}=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"lpdgen.commands.{name}").register(sub)
    _add_debug_flag(sub)
    _add_threads_flag(sub)
    return parser


def _add_debug_flag(sub: argparse._SubParsersAction) -> None:
    """Accept ``--debug`` after any (sub)command name too; SUPPRESS keeps a subcommand from resetting it."""
    for parser in sub.choices.values():
        parser.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help=f"show full tracebacks for every error (or set {DEBUG_ENV}=1)",
        )
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug_flag(action)


def _add_threads_flag(sub: argparse._SubParsersAction) -> None:
    """``--threads N`` on every command that has no flag of that name itself (train, bench and
    train-tokenizer word their own help; :func:`_set_threads` applies all of them): on a shared
    machine, one flag keeps lpdgen off the other cores."""
    for parser in sub.choices.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            _add_threads_flag(action)
        if not nested and "--threads" not in parser._option_string_actions:
            parser.add_argument(
                "--threads",
                type=int,
                default=argparse.SUPPRESS,
                help="torch CPU threads (default: torch's own, one per core)",
            )


def _set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` for every command (those with a flag of their own too), before it runs."""
    threads = getattr(args, "threads", 0)
    if not threads:
        return
    if threads < 0:
        raise UserError(f"--threads must be >= 1 (or 0 for torch's default), got {threads}")
    import torch

    torch.set_num_threads(threads)


def _debug(args: argparse.Namespace | None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _command_name(args: argparse.Namespace) -> str:
    sub = getattr(args, "eval_command", None) or getattr(args, "edit_command", None)
    return f"lpdgen {args.command}" + (f" {sub}" if sub else "")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lpdgen`` console script; returns the exit code.

    A user mistake (:data:`~lpdgen.commands.common.USER_ERRORS`) is one line on stderr and exit code 2;
    Ctrl-C is one line saying what was kept and how to resume (the command's ``interrupt_hint``), exit
    code 130; anything else is a bug and keeps its traceback. ``--debug`` / ``LPDGEN_DEBUG=1`` show
    tracebacks for everything.
    """
    args = None
    try:
        args = build_parser().parse_args(argv)
        setup_logging()
        _set_threads(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if _debug(args):
            raise
        hint = getattr(args, "interrupt_hint", None)
        name = _command_name(args) if args is not None else "lpdgen"
        print(f"\n{name}: interrupted; {hint(args) if hint else 'nothing was saved'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as e:
        if _debug(args):
            raise
        name = _command_name(args) if args is not None else "lpdgen"
        print(f"{name}: error: {one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
