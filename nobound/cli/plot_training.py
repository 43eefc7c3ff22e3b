"""``nobound plot-training``: training curves (loss, batch accuracies, eps, sigma) of a run.

    nobound plot-training runs/cnn3-rgs/log.jsonl --out curves.png

Reads the JSON-lines log ``nobound train`` writes and draws four panels against the step:
loss (total, robust, natural), natural and certified batch accuracy (and test accuracy
per epoch when logged), eps, and RGS/PGPE's sigma (the learning rate for other methods).
Needs matplotlib.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nobound.cli import UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plot-training", help="plot loss, accuracies, eps and sigma from a training log",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", help="log.jsonl of a `nobound train` run (or its directory)")
    parser.add_argument("--out", required=True, help="image to write (.png, .pdf, .svg)")
    parser.add_argument("--title", help="figure title (default: the log's path)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nobound.analysis.training_curves import plot_training_curves

    log = Path(args.log)
    if log.is_dir():
        log = log / "log.jsonl"
    if not log.is_file():
        raise UsageError(f"no training log at {log}")
    try:
        written = plot_training_curves(log, args.out, args.title)
    except RuntimeError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {written}")
    return 0
