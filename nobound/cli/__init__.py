"""The ``nobound`` command line: one module per sub-command, each with ``register``.

Every sub-command module defines ``register(subparsers)`` which adds its parser and sets
``func`` to a function ``(args) -> int`` (the exit status). Errors the user can fix
(bad flags, missing files, corrupted checkpoints) are raised as :class:`UsageError` or
``ValueError``/``OSError`` and reported on one line with exit status 2; nothing is written.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: tuple[str, ...] = ("train", "evaluate", "demo", "plot_training", "certify", "verify",
                             "analysis", "bounds", "vnncomp", "export")


class UsageError(Exception):
    """A problem with the user's input, reported as one line and exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nobound",
        description="nobound: certified robustness of neural networks on NumPy/CuPy — "
                    "train (standard, PGD, certified with GRAD/RGS/PGPE), bound, certify "
                    "and verify networks.",
    )
    parser.add_argument("--version", action="version", version="nobound 0.1.0")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"nobound.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from nobound.host_memory import tune_host_allocator

    tune_host_allocator()  # reuse freed host memory across steps (a process-wide setting)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("nobound: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, OSError, KeyError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"nobound {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
