"""Standard training of cnn3 (Table 9) on MNIST for 3 epochs; reports the test accuracy.

    NOBOUND_DATA=../shared/data python examples/train_cnn3_mnist.py

Target (issue 2): ≥ 97 % test accuracy. Uses the library exactly as ``nobound train``
does — the zoo model with the dataset normalisation as layer 0, Kaiming-uniform
initialisation, Adam, the trainer with its JSON-lines log and checkpoints — and writes
``result.json`` (accuracy, wall time, machine) next to them in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from nobound.attack.evaluation import predict
from nobound.data import BatchLoader, load_dataset
from nobound.nn import build_model, kaiming_uniform
from nobound.training.method import create_method
from nobound.training.trainer import Trainer, TrainerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="data root (default $NOBOUND_DATA)")
    parser.add_argument("--out", default="runs/cnn3-mnist-standard")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train = load_dataset("mnist", "train", data_dir=args.data_dir)
    test = load_dataset("mnist", "test", data_dir=args.data_dir)
    model = build_model("cnn3", train.input_shape, train.num_classes,
                        normalize=(train.mean, train.std))
    kaiming_uniform(model, args.seed)
    loader = BatchLoader(train, args.batch_size, seed=args.seed)
    config = TrainerConfig(epochs=args.epochs, seed=args.seed, lr=args.lr,
                           lr_milestones=[args.epochs - 1], lr_decay=0.2, log_every=100)

    def test_accuracy(trained) -> dict[str, float]:
        return {"test_accuracy": float((predict(trained, test.images) == test.labels).mean())}

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; choose another --out")
    trainer = Trainer(model, create_method("standard"), loader, config, run_dir=out,
                      evaluate=test_accuracy)
    start = time.perf_counter()
    record = trainer.fit()
    seconds = time.perf_counter() - start
    result = {"model": "cnn3", "parameters": model.num_parameters(), "dataset": "mnist",
              "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "test_accuracy": record["test_accuracy"], "train_seconds": seconds,
              "machine": f"{platform.processor() or platform.machine()}, "
                         f"{os.cpu_count()} CPUs, numpy {np.__version__}"}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"cnn3 on MNIST, {args.epochs} epochs: test accuracy "
          f"{100 * record['test_accuracy']:.2f} % in {seconds:.0f} s -> {out}/result.json")


if __name__ == "__main__":
    main()
