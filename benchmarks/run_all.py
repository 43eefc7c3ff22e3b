"""Run the engine benchmarks of issue 2, one after another, with the same thread count.

    python benchmarks/run_all.py [--threads 2] [--quick]

Each benchmark writes benchmarks/results/<name>.json and prints its table; docs/benchmarks.md
explains them. ``--quick`` runs a reduced version of each (about a minute in all) to check
that everything works, writing to results/quick/ so the real results stay. The
certified-training benchmarks (``gls_*.py``, ``certify_*.py``) are separate; see
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

BENCHMARKS = {
    "engine_conv2d.py": ([], ["--quick", "--rounds", "2"]),
    "engine_train_cnn3.py": ([], ["--epochs", "1", "--steps-per-epoch", "50"]),
    "engine_population.py": ([], ["--rounds", "1", "--population", "32"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("extra", nargs="*", help="benchmark file names to run (default all)")
    args = parser.parse_args()
    failed = []
    for name, (full, quick) in BENCHMARKS.items():
        if args.extra and name not in args.extra:
            continue
        command = [sys.executable, str(HERE / name), "--threads", str(args.threads),
                   *(quick + ["--results-dir", str(HERE / "results" / "quick")]
                     if args.quick else full)]
        print(f"$ {' '.join(command)}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
