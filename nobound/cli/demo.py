"""``nobound demo``: the paper in miniature, offline, in about two minutes on two CPU cores.

On the Fashion-MNIST subset shipped with nobound it trains CNN3-tiny (Table 9) four times
from the same IBP initialisation (Shi et al., 2021), once per cell of

    {GRAD (plain gradient of the bound), RGS (Gaussian loss smoothing, §3.3)}
  × {IBP (loose, smooth), DeepPoly (tight, discontinuous)}

with the certified loss of eq. (1) and Shi et al.'s smoothed eps ramp, then certifies each
network on the first --n test images with the complete certifier (PGD, then IBP → CROWN-IBP
→ DeepPoly → alpha-CROWN on the whole ball, then branch and bound until --timeout), and
writes to --out:

* ``results.md`` / ``results.json``: natural, certified and PGD accuracy (%), unknowns and
  training time per network — certified is a lower bound on robust accuracy, PGD an upper
  bound, and every certified sample passed the rigorous checker (the PGD attack of all test
  images runs batched first; the timeout is each image's search after it);
* ``training.png``: the training curves (certified loss and certified batch accuracy);
* ``<method>-<relaxation>/``: each network (model.h5) with its log.jsonl.

At this budget (about 130 steps on 800 images) the demo shows the machinery, not the
paper's numbers: which cell wins can change with the seed. docs/reproduction.md has the
full-schedule MNIST table.
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
ARCH = "cnn3_tiny"
CELLS = (("grad", "ibp"), ("grad", "deeppoly"), ("rgs", "ibp"), ("rgs", "deeppoly"))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="certified training with GRAD and RGS over IBP and DeepPoly, then "
                     "complete certification, offline (about two minutes)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="nobound-demo",
                        help="output directory (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs (default %(default)s)")
    parser.add_argument("--eps", type=float, default=0.02,
                        help="l_inf radius for training and certification "
                             "(default %(default)s)")
    parser.add_argument("--n", type=int, default=100,
                        help="test images to certify (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=1.0,
                        help="certifier seconds per test image (default %(default)s)")
    parser.add_argument("--limit", type=int, default=800,
                        help="training images (default %(default)s, at most 2000)")
    parser.add_argument("--sigma", type=float, default=1e-2,
                        help="RGS smoothing std (default %(default)s; the paper's 1e-3 is "
                             "for 70 epochs)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def say(args: argparse.Namespace, message: str) -> None:
    """Progress on stderr, one line per phase, also when it is not a terminal."""
    if not args.quiet:
        print(f"[demo] {message}", file=sys.stderr, flush=True)


def train_cell(method: str, relaxation: str, train: Any, args: argparse.Namespace,
               out: Path) -> tuple[Any, float]:
    from nobound.data import BatchLoader
    from nobound.io.architecture import describe_model
    from nobound.nn import build_model, ibp_init
    from nobound.training.method import create_method
    from nobound.training.schedules import EpsilonRamp
    from nobound.training.trainer import Trainer, TrainerConfig

    started = time.perf_counter()
    model = build_model(ARCH, train.input_shape, train.num_classes,
                        normalize=(train.mean, train.std))
    ibp_init(model, args.seed).to(args.device)
    options: dict[str, Any] = {"relaxation": relaxation}
    milestone = max(1, (3 * args.epochs) // 4)
    if method == "rgs":
        options.update(population_size=2, sigma=args.sigma, sigma_milestones=[milestone])
    loader = BatchLoader(train, 50, seed=args.seed, device=args.device)
    config = TrainerConfig(epochs=args.epochs, seed=args.seed, lr=5e-3, eps=args.eps,
                           lr_milestones=[milestone], lr_decay=0.2, grad_clip=10.0,
                           log_every=5, checkpoint_each_epoch=False)
    ramp = EpsilonRamp(args.eps, start_epoch=1, length_epochs=max(1, args.epochs // 2))
    run_dir = out / f"{method}-{relaxation}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log.jsonl").unlink(missing_ok=True)  # a rerun replaces the previous demo
    trainer = Trainer(model, create_method(method, **options), loader, config,
                      run_dir=run_dir,
                      architecture=describe_model(model, train.input_shape,
                                                  train.num_classes, name=ARCH),
                      eps_schedule=ramp, run_config={"demo": True, "dataset": DATASET,
                                                     "method": method,
                                                     "relaxation": relaxation},
                      quiet=True)
    trainer.fit()
    return model, time.perf_counter() - started


def certify_cell(model: Any, test: Any, args: argparse.Namespace) -> dict[str, Any]:
    from nobound.certify.batched import certify_batch
    from nobound.certify.evaluation import summarize
    from nobound.certify.pipeline import Certifier, CertifierConfig

    certifier = Certifier(model, test.input_shape,
                          CertifierConfig(timeout=args.timeout, bab_method="alpha-crown",
                                          robustness_attack_steps=50,
                                          robustness_attack_restarts=2, seed=args.seed))
    verdicts = certify_batch(certifier, test.images, test.labels, args.eps)
    records = [{"index": index, **verdict.to_json()} for index, verdict in enumerate(verdicts)]
    summary = summarize(records)
    summary["unknown"] = sum(r["status"] == "unknown" for r in records)
    summary["by_branch_and_bound"] = sum(r["status"] == "certified" and
                                         r["method"] == "bab" for r in records)
    return summary


def plot_curves(out: Path, logs: dict[str, Path]) -> Path | None:
    """Certified loss and certified batch accuracy per step, one line per network."""
    try:
        from nobound.analysis.plots import _pyplot
        from nobound.analysis.training_curves import read_training_log

        plt = _pyplot()
    except ImportError:  # matplotlib is an extra
        return None
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, log in logs.items():
        steps = read_training_log(log)["step"]
        for axis, key in zip(axes, ("robust_loss", "certified_accuracy"), strict=True):
            if key in steps:
                axis.plot(steps["step"], steps[key], label=label)
    axes[0].set_ylabel("certified loss (eq. 1)")
    axes[1].set_ylabel("certified batch accuracy")
    for axis in axes:
        axis.set_xlabel("step")
        axis.legend(fontsize=8)
    figure.tight_layout()
    path = out / "training.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def run(args: argparse.Namespace) -> int:
    check_non_negative("--eps", args.eps)
    check_positive("--epochs", args.epochs)
    check_positive("--n", args.n)
    check_positive("--limit", args.limit)
    check_positive("--timeout", args.timeout)
    check_non_negative("--sigma", args.sigma)
    check_device(args.device)
    out = Path(args.out)
    check_output_directory(out)
    train = load_split(DATASET, "train", None, args.limit)
    test = load_split(DATASET, "test", None, args.n)

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    rows, results, logs = [], [], {}
    for number, (method, relaxation) in enumerate(CELLS, start=1):
        name = f"{relaxation}-{method}".upper().replace("DEEPPOLY", "DeepPoly")
        say(args, f"{number}/{len(CELLS)} training {ARCH} with {name} "
                  f"({args.epochs} epochs, {len(train)} images)")
        model, train_seconds = train_cell(method, relaxation, train, args, out)
        model.eval()
        say(args, f"{number}/{len(CELLS)} certifying {name} on {len(test.labels)} images "
                  f"(timeout {args.timeout:g} s each)")
        certify_started = time.perf_counter()
        summary = certify_cell(model, test, args)
        certify_seconds = time.perf_counter() - certify_started
        say(args, f"{number}/{len(CELLS)} {name}: certified "
                  f"{summary['certified_accuracy']:.1f} %, natural "
                  f"{summary['natural_accuracy']:.1f} %")
        logs[name] = out / f"{method}-{relaxation}" / "log.jsonl"
        results.append({"method": method, "relaxation": relaxation, **summary,
                         "train_seconds": train_seconds, "certify_seconds": certify_seconds})
        rows.append([name, summary["natural_accuracy"], summary["certified_accuracy"],
                     summary["adversarial_accuracy"], summary["unknown"],
                     f"{train_seconds:.0f}"])
    figure = plot_curves(out, logs)
    total = time.perf_counter() - started
    table = markdown_table(["network", "natural %", "certified %", "PGD %", "unknown",
                            "train s"], rows)
    write_json(out / "results.json", {
        "dataset": DATASET, "architecture": ARCH, "epochs": args.epochs, "eps": args.eps,
        "train_examples": len(train), "test_examples": len(test.labels),
        "timeout": args.timeout, "rgs_sigma": args.sigma, "networks": results,
        "total_seconds": total})
    write_text_atomically(out / "results.md", (
        f"# nobound demo\n\n{ARCH} trained on {len(train)} Fashion-MNIST images for "
        f"{args.epochs} epochs at eps = {args.eps:g} with GRAD and RGS over IBP and DeepPoly, "
        f"each certified on {len(test.labels)} test images by the complete certifier "
        f"(timeout {args.timeout:g} s per image); {total:.0f} s in all.\n\n{table}\n"
        + (f"![training curves]({figure.name})\n" if figure else "")))
    print(table, end="")
    say(args, f"results in {out}/results.md ({total:.0f} s)")
    return 0
