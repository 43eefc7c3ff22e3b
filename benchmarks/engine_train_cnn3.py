"""Benchmark 2 (issue 2): one epoch of standard training of cnn3 on MNIST, nobound vs PyTorch.

    python benchmarks/engine_train_cnn3.py [--data-dir ../shared/data] [--threads 2] \
        [--epochs 3] [--steps-per-epoch N]

Both frameworks train the same network (cnn3 of Table 9, 5,170 parameters, starting from
the same Kaiming-uniform weights) with cross-entropy, Adam (lr 1e-3) and batch 128, on the
same shuffled batches, with the same thread count, after ``--warmup-steps`` untimed
steps (one-time costs: Numba loading its compiled loops, about a second). They take turns
every ``--chunk`` steps (the order flips each turn) so load from other processes hits both
alike; each framework's epoch time is the sum of its turns. The target of issue 2 is nobound ≤ 1.5×
PyTorch's time. ``--steps-per-epoch`` times only the first N steps of each epoch and
extrapolates to the full epoch (marked in the results). The test accuracy of both models
after the last epoch is reported as a sanity check. Results: results/engine_train_cnn3.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from engine_common import (
    add_common_arguments,
    machine,
    print_table,
    setup_threads_and_torch,
    write_results,
)

from nobound.autodiff import Tensor, no_grad
from nobound.data import load_dataset
from nobound.nn import build_model, kaiming_uniform
from nobound.training.losses import cross_entropy
from nobound.training.optim import Adam

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class NoboundRun:
    """cnn3 trained with nobound's public pieces: model, cross_entropy, Adam."""

    def __init__(self, seed: int, lr: float) -> None:
        self.model = kaiming_uniform(build_model("cnn3", (1, 28, 28), 10), seed)
        self.optimizer = Adam(dict(self.model.named_parameters()), lr=lr)

    def step(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.optimizer.zero_grad()
        cross_entropy(self.model(Tensor(images)), labels).backward()
        self.optimizer.step()

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        with no_grad():
            logits = np.concatenate([self.model(Tensor(images[i:i + 1000])).data
                                     for i in range(0, len(images), 1000)])
        return float((logits.argmax(axis=1) == labels).mean())


class TorchRun:
    """The same network in PyTorch, loaded with the nobound run's initial weights."""

    def __init__(self, torch: Any, initial: dict[str, np.ndarray], lr: float) -> None:
        nn = torch.nn
        self.torch = torch
        self.model = nn.Sequential(nn.Conv2d(1, 8, 5, 2, 2), nn.ReLU(), nn.Conv2d(8, 8, 4, 2, 1),
                                   nn.ReLU(), nn.Flatten(), nn.Linear(392, 10))
        self.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in initial.items()})
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)

    def step(self, images: np.ndarray, labels: np.ndarray) -> None:
        torch = self.torch
        self.optimizer.zero_grad()
        logits = self.model(torch.from_numpy(images))
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)).backward()
        self.optimizer.step()

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        with self.torch.no_grad():
            logits = self.model(self.torch.from_numpy(images)).numpy()
        return float((logits.argmax(axis=1) == labels).mean())


def train_epochs(runs: dict[str, Any], images: np.ndarray, labels: np.ndarray, args: Any
                 ) -> dict[str, list[float]]:
    """Train every run for ``args.epochs`` epochs in alternating turns; epoch seconds."""
    steps_total = -(-len(images) // args.batch_size)
    steps = min(steps_total, args.steps_per_epoch or steps_total)
    seconds: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in runs}
    rng = np.random.default_rng(args.seed)
    warmup = rng.permutation(len(images))[:args.warmup_steps * args.batch_size]
    for run in runs.values():  # one-time costs (Numba's first call, allocator) untimed
        for step in range(args.warmup_steps):
            batch = warmup[step * args.batch_size:(step + 1) * args.batch_size]
            run.step(images[batch], labels[batch])
    turn = 0
    for epoch in range(args.epochs):
        order = rng.permutation(len(images))
        spent = {n: {"wall": 0.0, "cpu": 0.0} for n in runs}
        for first in range(0, steps, args.chunk):
            names = list(runs) if turn % 2 == 0 else list(reversed(runs))
            turn += 1
            for name in names:
                wall, cpu = time.perf_counter(), time.process_time()
                for step in range(first, min(first + args.chunk, steps)):
                    batch = order[step * args.batch_size:(step + 1) * args.batch_size]
                    runs[name].step(images[batch], labels[batch])
                spent[name]["wall"] += time.perf_counter() - wall
                spent[name]["cpu"] += time.process_time() - cpu
        for name in runs:
            for clock in ("wall", "cpu"):
                seconds[name][clock].append(spent[name][clock] * steps_total / steps)
        print(f"epoch {epoch}: " + ", ".join(f"{n} {spent[n]['wall']:.2f} s" for n in runs),
              flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("NOBOUND_DATA", str(DEFAULT_DATA)))
    add_common_arguments(parser)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (median reported)")
    parser.add_argument("--steps-per-epoch", type=int, default=0,
                        help="time only this many steps per epoch and extrapolate (0: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--chunk", type=int, default=25, help="steps per turn")
    parser.add_argument("--warmup-steps", type=int, default=10,
                        help="untimed steps before the timed epochs (same batches for both)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch = setup_threads_and_torch(args.threads)

    machine_info = machine(args.threads)  # load average at the start
    train = load_dataset("mnist", "train", data_dir=args.data_dir)
    test = load_dataset("mnist", "test", data_dir=args.data_dir)
    images, labels = np.ascontiguousarray(train.images, dtype=np.float32), train.labels
    nobound_run = NoboundRun(args.seed, args.lr)
    initial = {k: np.asarray(v) for k, v in nobound_run.model.state_dict().items()}
    runs = {"nobound": nobound_run, "torch": TorchRun(torch, initial, args.lr)}
    seconds = train_epochs(runs, images, labels, args)

    test_images = np.ascontiguousarray(test.images, dtype=np.float32)
    summary = {name: {"wall_median": statistics.median(s["wall"]), "wall_min": min(s["wall"]),
                      "cpu_median": statistics.median(s["cpu"]), "cpu_min": min(s["cpu"]),
                      "epoch_seconds_wall": s["wall"], "epoch_seconds_cpu": s["cpu"],
                      "test_accuracy": runs[name].accuracy(test_images, test.labels)}
               for name, s in seconds.items()}
    ratios = {key: summary["nobound"][key] / summary["torch"][key]
              for key in ("wall_median", "wall_min", "cpu_median", "cpu_min")}
    steps_total = -(-len(images) // args.batch_size)
    timed_steps = min(steps_total, args.steps_per_epoch or steps_total)
    print_table([{"framework": n, "epoch s (median wall)": s["wall_median"],
                  "epoch s (median cpu)": s["cpu_median"], "test accuracy": s["test_accuracy"]}
                 for n, s in summary.items()],
                ["framework", "epoch s (median wall)", "epoch s (median cpu)", "test accuracy"])
    print(f"ratio nobound / PyTorch: wall {ratios['wall_median']:.2f}, "
          f"cpu {ratios['cpu_median']:.2f} (target ≤ 1.5)")
    write_results("engine_train_cnn3", {
        "benchmark": "one epoch of standard training, cnn3 on MNIST",
        "machine": machine_info,
        "settings": {"batch_size": args.batch_size, "optimizer": "adam", "lr": args.lr,
                     "epochs_timed": args.epochs, "steps_per_epoch": steps_total,
                     "steps_timed_per_epoch": timed_steps, "warmup_steps": args.warmup_steps,
                     "extrapolated": timed_steps < steps_total, "chunk": args.chunk,
                     "train_examples": len(images)},
        "results": summary, "ratio": ratios, "target": 1.5,
        "target_met_wall_median": ratios["wall_median"] <= 1.5}, args.results_dir)


if __name__ == "__main__":
    main()
