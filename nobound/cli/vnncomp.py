"""``nobound vnncomp``: run a whole VNN-COMP benchmark, resume it, compare with a consensus.

    nobound vnncomp ../shared/vnncomp/2022/acasxu/instances.csv --out runs/acasxu \\
        --timeout-scale 0.1 --consensus ../shared/vnncomp/2022/acasxu/results.csv

Every instance runs as its own ``nobound verify … --results-file`` process with the CSV's
timeout × ``--timeout-scale``; a progress line per instance goes to stdout (flushed, also
when it is not a terminal); ``OUT/results.csv`` keeps the ledger, so running the same
command again resumes. The summary counts the verdicts and, with ``--consensus`` (the
published ``results.csv``), lists every instance where nobound contradicts the consensus.
``--select START:STOP:STEP`` runs a slice of the instances (a sample per category).
Exit status: 0, or 3 when some verdict contradicts the consensus.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from nobound.cli import UsageError
from nobound.cli.common import check_positive
from nobound.cli.verify import check_extra_flags

CONTRADICTION_EXIT = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "vnncomp", help="run a VNN-COMP benchmark (instances CSV) with resume and summary",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instances", help="the benchmark's instances CSV (onnx,vnnlib,timeout)")
    parser.add_argument("--root", help="folder the CSV's paths are relative to (default: "
                                       "the CSV's folder)")
    parser.add_argument("--out", required=True, help="folder for result files and the ledger")
    parser.add_argument("--timeout-scale", type=float, default=1.0,
                        help="multiply every CSV timeout by this (default %(default)s)")
    parser.add_argument("--consensus", help="published results.csv to compare against")
    parser.add_argument("--select", help="START:STOP:STEP slice of the instances")
    parser.add_argument("--verify-args", default="",
                        help="more `nobound verify` flags for every instance, e.g. "
                             "\"--methods deeppoly\" (checked by verify's own parser before "
                             "the first instance runs)")
    parser.set_defaults(func=run)


def select(instances: list[Any], text: str | None) -> list[Any]:
    if not text:
        return instances
    try:
        parts = [int(p) if p.strip() else None for p in text.split(":")]
        if not 1 <= len(parts) <= 3:
            raise ValueError
        return instances[slice(*parts)] if len(parts) > 1 else instances[parts[0]:parts[0] + 1]
    except (ValueError, TypeError):
        raise UsageError(f"--select {text!r}: expected START:STOP:STEP") from None


def run(args: argparse.Namespace) -> int:
    from nobound.vnncomp.benchmark import (
        read_consensus,
        read_instances,
        run_benchmark,
        summary_table,
    )

    check_positive("--timeout-scale", args.timeout_scale)
    csv_path = Path(args.instances)
    if not csv_path.is_file():
        raise UsageError(f"{csv_path}: no such instances file")
    root = Path(args.root) if args.root else csv_path.parent
    if not root.is_dir():
        raise UsageError(f"--root {root}: no such folder")
    verify_args = shlex.split(args.verify_args)
    check_extra_flags(verify_args)
    instances = select(read_instances(csv_path), args.select)
    consensus = read_consensus(args.consensus) if args.consensus else None
    outcomes = run_benchmark(instances, root, Path(args.out), args.timeout_scale, consensus,
                             verify_args,
                             progress=lambda line: print(line, flush=True))
    print()
    print(summary_table(outcomes), flush=True)
    return CONTRADICTION_EXIT if any(o.agreement == "CONTRADICTION" for o in outcomes) else 0
