"""``nobound evaluate``: natural and PGD accuracy of a checkpoint.

    nobound evaluate --model runs/cnn3-std/model.h5 --dataset mnist --eps 0.1 --n 1000

The attack is CTBench's evaluation PGD (200 steps, 5 restarts, margin loss, step 0.2 of
the box half-width with ×0.1 decays at 50/80/90 % of the steps), inside
[x − eps, x + eps] ∩ [0, 1]. Adversarial accuracy is an upper bound on robust accuracy
(use ``nobound certify`` for the certified lower bound). Writes
``evaluation-<dataset>-eps<eps>.json`` and ``.md`` to --out (default: the checkpoint's
directory) and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from nobound.cli import UsageError
from nobound.cli.common import (
    add_checkpoint_arguments,
    check_device,
    check_finite,
    check_model_fits_data,
    check_non_negative,
    check_output_directory,
    check_positive,
    load_split,
    markdown_table,
    write_json,
    write_text_atomically,
)


def register(subparsers: Any) -> None:
    from nobound.attack.pgd import EVALUATION_ATTACK

    parser = subparsers.add_parser(
        "evaluate", help="natural and PGD accuracy of a trained checkpoint",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(parser, "checkpoint (.h5) to evaluate")
    parser.add_argument("--eps", type=float,
                        help="l_inf radius in pixel units (default: the training eps; "
                             "0: natural accuracy only)")
    parser.add_argument("--n", type=int, default=1000,
                        help="evaluate the first N examples (0: all; default %(default)s)")
    parser.add_argument("--steps", type=int, default=EVALUATION_ATTACK.steps,
                        help="PGD steps (default %(default)s)")
    parser.add_argument("--restarts", type=int, default=EVALUATION_ATTACK.restarts,
                        help="PGD restarts (default %(default)s)")
    parser.add_argument("--step-size", type=float, default=EVALUATION_ATTACK.step_size,
                        help="initial PGD step relative to the box half-width "
                             "(default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="examples per attack batch (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    parser.add_argument("--out", help="output directory (default: the checkpoint's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table")
    parser.set_defaults(func=run)


def prepare(args: argparse.Namespace) -> tuple[Any, Any, float, Any]:
    """Validate everything and load (checkpoint, dataset, eps, attack) — writes nothing."""
    from nobound.attack.pgd import PGDConfig
    from nobound.io.models import load_model_checkpoint as load_checkpoint  # .h5 or .onnx

    check_non_negative("--eps", args.eps)
    check_finite("--eps", args.eps)
    check_non_negative("--n", args.n)
    check_non_negative("--seed", args.seed)
    check_positive("--batch-size", args.batch_size)
    attack = PGDConfig(steps=args.steps, restarts=args.restarts, step_size=args.step_size)
    check_device(args.device)
    checkpoint = load_checkpoint(args.model, device=args.device)
    run = checkpoint.config.get("run", {})
    dataset_name = args.dataset or run.get("dataset")
    if dataset_name is None:
        raise UsageError(f"{args.model} does not record its dataset; pass --dataset")
    eps = args.eps if args.eps is not None else float(
        checkpoint.config.get("trainer", {}).get("eps", 0.0))
    data = load_split(dataset_name, args.split, args.data_dir, args.n or None)
    check_non_negative("--eps", eps)  # the training eps of the checkpoint, too
    check_finite("--eps", eps)
    check_model_fits_data(checkpoint.model, checkpoint.architecture, data, args.model)
    return checkpoint, data, eps, attack


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nobound.attack.evaluation import attack_settings, evaluate_robustness
    from nobound.backend import to_device
    from nobound.training.progress import ProgressBar

    checkpoint, data, eps, attack = prepare(args)
    out = Path(args.out) if args.out else checkpoint.path.parent
    check_output_directory(out)
    dtype = np.dtype(checkpoint.architecture.get("dtype", "float32"))
    images = to_device(data.images.astype(dtype), args.device)
    labels = to_device(data.labels, args.device)
    bar = ProgressBar(len(data), description="evaluate",
                      enabled=False if args.quiet else None)
    start = time.perf_counter()
    try:
        report = evaluate_robustness(checkpoint.model, images, labels, eps, config=attack,
                                     batch_size=args.batch_size, seed=args.seed,
                                     on_batch=bar.update)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    result = {"model": str(checkpoint.path), "dataset": data.name, "split": data.split,
              **report.summary(), "attack": attack_settings(attack), "seed": args.seed,
              "seconds": seconds}
    table = markdown_table(
        ["model", "dataset", "n", "eps", "natural acc. (%)", "PGD acc. (%)"],
        [[checkpoint.path.name, data.name, report.n, f"{eps:g}",
          100 * report.natural_accuracy, 100 * report.adversarial_accuracy]])
    out.mkdir(parents=True, exist_ok=True)
    stem = f"evaluation-{data.name}-eps{eps:g}"
    write_json(out / f"{stem}.json", result)
    note = (f"\nPGD: {attack.steps} steps, {attack.restarts} restarts, {attack.loss} loss, "
            f"seed {args.seed}; {seconds:.1f} s.\n")
    write_text_atomically(out / f"{stem}.md", table + note)
    if not args.quiet:
        print(table, end="")
    print(f"wrote {out / stem}.json and .md", file=sys.stderr)
    return 0
