"""``nobound demo``: the whole pipeline offline, in about a minute on two CPU cores.

On the Fashion-MNIST subset shipped with nobound (2,000 training and 500 test images) it

1. trains cnn3 (Table 9) with PGD adversarial training (5 attack steps per batch, half
   of the usual 10, to stay quick): eps = 0 (standard training) for the first third of
   the epochs, ramped linearly to --eps over the second third, then held;
2. measures natural accuracy and PGD accuracy (an upper bound on robust accuracy) on the
   first --n test images;
3. certifies the same images with IBP and DeepPoly (a lower bound on robust accuracy:
   a sample counts only if every margin y_t − y_j has a positive lower bound over the
   whole l_inf ball), when :mod:`nobound.bounds` is available;

and writes model.h5, log.jsonl, results.json and results.md to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from nobound.cli.common import (
    check_device,
    check_non_negative,
    check_output_directory,
    check_positive,
    load_split,
    markdown_table,
    write_json,
    write_text_atomically,
)

DATASET = "fashion-mnist-embedded"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="train, attack and certify a small network offline (about a minute)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="nobound-demo",
                        help="output directory (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs (default %(default)s)")
    parser.add_argument("--eps", type=float, default=0.02,
                        help="l_inf radius for training, attack and certification "
                             "(default %(default)s)")
    parser.add_argument("--n", type=int, default=200,
                        help="test images to attack and certify (default %(default)s)")
    parser.add_argument("--attack-steps", type=int, default=40,
                        help="PGD steps of the evaluation attack (default %(default)s)")
    parser.add_argument("--limit", type=int,
                        help="train on the first N images only (for a quicker run)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def certified_accuracy(model: Any, images: Any, labels: Any, eps: float,
                       method: str) -> float | None:
    """Fraction of samples whose margin lower bounds are all > 0 (None: no bounds yet)."""
    try:
        from nobound.bounds import compute_bounds, linf_ball, margin_spec
    except ImportError:
        return None
    from nobound.autodiff.tensor import no_grad
    from nobound.backend import to_numpy, unwrap

    model.eval()
    with no_grad():
        region = linf_ball(images, eps, low=0.0, high=1.0)
        spec = margin_spec(labels, int(model(images[:1]).shape[-1]))
        lower = compute_bounds(model, region, method=method, spec=spec).lower
    return float((to_numpy(unwrap(lower)) > 0).all(axis=-1).mean())


def run(args: argparse.Namespace) -> int:
    from nobound.attack.evaluation import evaluate_robustness
    from nobound.attack.pgd import PGDConfig
    from nobound.backend import to_device
    from nobound.data import BatchLoader
    from nobound.io.architecture import describe_model
    from nobound.nn import build_model, kaiming_uniform
    from nobound.training.method import create_method
    from nobound.training.trainer import Trainer, TrainerConfig

    check_non_negative("--eps", args.eps)
    check_positive("--epochs", args.epochs)
    check_positive("--n", args.n)
    check_positive("--attack-steps", args.attack_steps)
    check_positive("--limit", args.limit)
    check_device(args.device)
    out = Path(args.out)
    check_output_directory(out)
    train = load_split(DATASET, "train", None, args.limit)
    test = load_split(DATASET, "test", None, args.n)

    started = time.perf_counter()
    model = build_model("cnn3", train.input_shape, train.num_classes,
                        normalize=(train.mean, train.std))
    kaiming_uniform(model, args.seed).to(args.device)
    loader = BatchLoader(train, 50, seed=args.seed, device=args.device)
    config = TrainerConfig(epochs=args.epochs, seed=args.seed, lr=5e-3, eps=args.eps,
                           lr_milestones=[max(1, (3 * args.epochs) // 4)], lr_decay=0.2,
                           log_every=10, checkpoint_each_epoch=False)
    ramp_start = (args.epochs // 3) * len(loader)
    ramp_length = max(1, (args.epochs // 3) * len(loader))

    def eps_ramp(step: int, steps_per_epoch: int) -> float:
        return args.eps * min(1.0, max(0.0, (step - ramp_start) / ramp_length))

    out.mkdir(parents=True, exist_ok=True)
    (out / "log.jsonl").unlink(missing_ok=True)  # a rerun replaces the previous demo
    trainer = Trainer(model, create_method("pgd", steps=5), loader, config, run_dir=out,
                      architecture=describe_model(model, train.input_shape,
                                                  train.num_classes, name="cnn3"),
                      eps_schedule=eps_ramp, run_config={"demo": True, "dataset": DATASET},
                      quiet=args.quiet)
    trainer.fit()
    train_seconds = time.perf_counter() - started

    images = to_device(test.images, args.device)
    labels = to_device(test.labels, args.device)
    attack = PGDConfig(steps=args.attack_steps, restarts=1)
    report = evaluate_robustness(model, images, labels, args.eps, config=attack,
                                 seed=args.seed)
    certified = {name: certified_accuracy(model, images, labels, args.eps, name)
                 for name in ("ibp", "deeppoly")}
    results = {"dataset": DATASET, "architecture": "cnn3", "method": "pgd",
               "epochs": args.epochs, "train_examples": len(train), **report.summary(),
               "attack": {"steps": attack.steps, "restarts": attack.restarts,
                          "loss": attack.loss},
               "certified_accuracy": certified, "train_seconds": train_seconds,
               "total_seconds": time.perf_counter() - started}
    rows = [["natural", 100 * report.natural_accuracy],
            [f"PGD ({attack.steps} steps), upper bound", 100 * report.adversarial_accuracy]]
    for name, value in certified.items():
        rows.append([f"certified ({name}), lower bound",
                     "n/a (nobound.bounds missing)" if value is None else 100 * value])
    table = markdown_table([f"accuracy on {report.n} test images, eps={args.eps:g}", "%"],
                           rows)
    write_json(out / "results.json", results)
    write_text_atomically(out / "results.md", f"# nobound demo\n\ncnn3 trained with PGD on "
                          f"{len(train)} Fashion-MNIST images for {args.epochs} epochs "
                          f"({train_seconds:.0f} s).\n\n{table}")
    print(table, end="")
    print(f"results in {out}/results.md, model in {out}/model.h5", file=sys.stderr)
    return 0
