"""The trainer: epochs of optimiser steps driven by a pluggable training method.

One step at global index s (epoch e, batch b of S per epoch):

    ε_s = eps_schedule(s, S)                     (constant ``config.eps`` by default)
    η_s = lr · decay^(#milestones ≤ e + b/S)     (MultiStepLR on the fractional epoch)
    g   = method.compute_step(model, batch_{e,b}, context(e, s, b, ε_s, η_s, plan)).gradients
          (or its |M_k|/B-weighted sum over micro-batches M_k, ``config.micro_batch``)
    g  ← g · min(1, c / ‖g‖₂)                    (global-norm clipping when c > 0)
    θ  ← optimiser(θ, g; η_s)

**The execution plan.** How the work of a step is cut and spread (micro-batches, threads,
population chunks, the bound's memory budget and patches) is decided once for the run, by
:meth:`TrainerConfig.execution_plan`, and handed to every step in its context
(:mod:`nobound.training.execution_plan`); methods and the certified loss read it there.

**Bit-for-bit resume.** Every random number is a function of counters: the loader's
shuffle of (seed, e) and augmentation of (seed, e, b), the method's streams of
(seed, e, s, name). A checkpoint stores the model, the optimiser state, the method state
and the counters (e, s, b) plus the running epoch sums; restoring them and iterating the
loader from (e, b) replays exactly the computation of an uninterrupted run.

**Files in ``run_dir``**: ``log.jsonl`` (a line per ``log_every`` steps and per epoch:
loss, accuracy, lr, eps, throughput, …), ``checkpoint-<step>.h5`` (every
``checkpoint_every`` steps and, unless ``checkpoint_each_epoch`` is off, at each epoch
end; the newest ``keep_checkpoints`` are kept) and ``model.h5`` when training completes.
:func:`latest_checkpoint` finds where to resume.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nobound.backend import get_array_module
from nobound.bounds.plan import BoundsPlan
from nobound.io.architecture import describe_model
from nobound.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nobound.nn.sequential import Sequential
from nobound.training.execution_plan import ExecutionPlan
from nobound.training.method import StepContext, TrainingMethod
from nobound.training.micro_batches import accumulate_micro_batches
from nobound.training.optim import OPTIMIZERS, MultiStepLR, clip_by_global_norm
from nobound.training.progress import JsonLinesLogger, ProgressBar

EpsSchedule = Callable[[int, int], float]
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)\.h5$")
# save_checkpoint writes ".<name>.<pid>.tmp" and renames it (nobound.io.checkpoint)
_TEMPORARY = re.compile(r"^\.(?:checkpoint-\d+|model)\.h5\.(\d+)\.tmp$")
#: Certified methods' metrics shown on the progress bar too (metric → label).
_EXTRA_BAR = {"certified_accuracy": "cert", "sigma": "sigma"}


@dataclass
class TrainerConfig:
    """Optimisation and bookkeeping settings, and those of the run's execution plan
    (:meth:`execution_plan`); everything here is stored in checkpoints."""

    epochs: int = 1
    seed: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    lr_milestones: list[int] = field(default_factory=list)
    lr_decay: float = 0.2
    grad_clip: float = 0.0
    eps: float = 0.0
    log_every: int = 50
    checkpoint_every: int = 0
    checkpoint_each_epoch: bool = True
    keep_checkpoints: int = 2
    # The execution plan's settings (execution_plan() turns them into the run's plan):
    micro_batch: int = 0  # examples per micro-batch of a step (0: the whole batch at once)
    # threads computing micro-batches at once (None: default_workers(); the gradient is
    # the same bit for bit, see nobound.training.micro_batches)
    micro_batch_workers: int | None = None
    population_workers: int | None = None  # threads evaluating RGS/PGPE population chunks
    population_chunk: int | None = None    # members per batched call (None: fitted to …)
    population_memory: float | None = None  # … MB the chunks in flight may use together
    bound_memory: float | None = None  # MB per chunk of back-substitution rows (None: 1 GiB)
    bound_patches: str = "auto"        # receptive-field patches: auto, always, never

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from "
                             f"{sorted(OPTIMIZERS)}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        if self.eps < 0:
            raise ValueError(f"eps must be non-negative, got {self.eps}")
        if self.grad_clip < 0:
            raise ValueError(f"gradient clipping threshold must be ≥ 0, got {self.grad_clip}")
        self.execution_plan()  # validates its settings
        if self.log_every < 1 or self.checkpoint_every < 0 or self.keep_checkpoints < 0:
            raise ValueError("log_every must be ≥ 1, checkpoint_every and keep_checkpoints ≥ 0")
        self.lr_milestones = [int(m) for m in self.lr_milestones]

    def execution_plan(self) -> ExecutionPlan:
        """The run's one execution plan: every choice of how a step's work is cut and
        spread, decided here from these settings and handed down by the trainer (to the
        micro-batches, the population methods and, as ``bounds``, the certified loss)."""
        if self.bound_memory is None:
            bounds = BoundsPlan(patches=self.bound_patches)
        elif self.bound_memory > 0:  # a budget below one byte is one byte: a row at a time
            bounds = BoundsPlan(memory_budget_bytes=max(1, int(self.bound_memory * 1e6)),
                                patches=self.bound_patches)
        else:
            raise ValueError(f"bound memory must be positive, got {self.bound_memory}")
        member_budget = None if self.population_memory is None \
            else self.population_memory * 1e6
        return ExecutionPlan(micro_batch=self.micro_batch,
                             micro_batch_workers=self.micro_batch_workers,
                             member_workers=self.population_workers,
                             member_chunk=self.population_chunk,
                             member_budget_bytes=member_budget, bounds=bounds)


def checkpoints_newest_first(run_dir: str | Path) -> list[Path]:
    """The ``checkpoint-<step>.h5`` files in ``run_dir``, largest step first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir()
             if (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The ``checkpoint-<step>.h5`` in ``run_dir`` with the largest step, or None."""
    found = checkpoints_newest_first(run_dir)
    return found[0] if found else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete the ``.<name>.h5.<pid>.tmp`` files of checkpoint writes whose process is gone
    (a write killed mid-way); a live writer's file is left alone. Returns what was removed."""
    run_dir = Path(run_dir)
    removed = []
    if not run_dir.is_dir():
        return removed
    for path in run_dir.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and int(match.group(1)) != os.getpid() and \
                not _process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class Trainer:
    """Train ``model`` with ``method`` on batches from ``loader`` (a BatchLoader).

    ``evaluate(model) -> dict`` (optional) runs after each epoch and is logged;
    ``run_config`` is stored in checkpoints next to the trainer settings (the CLI keeps
    dataset, architecture, batch size there); ``architecture`` defaults to
    :func:`~nobound.io.architecture.describe_model` of the model.
    """

    def __init__(self, model: Sequential, method: TrainingMethod, loader: Any,
                 config: TrainerConfig, *, run_dir: str | Path | None = None,
                 architecture: dict[str, Any] | None = None,
                 eps_schedule: EpsSchedule | None = None,
                 evaluate: Callable[[Sequential], dict[str, float]] | None = None,
                 run_config: dict[str, Any] | None = None, quiet: bool = False) -> None:
        self.model, self.method, self.loader, self.config = model, method, loader, config
        # the run's execution plan, decided once; every step's context carries it down
        self.plan = config.execution_plan()
        method.check_plan(self.plan)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.architecture = architecture or describe_model(model)
        self.eps_schedule = eps_schedule or (lambda step, steps_per_epoch: config.eps)
        self.evaluate, self.run_config, self.quiet = evaluate, run_config or {}, quiet
        params = dict(model.named_parameters())
        options = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
        self.optimizer = OPTIMIZERS[config.optimizer](params, lr=config.lr, **options)
        self.lr_schedule = MultiStepLR(config.lr, config.lr_milestones, config.lr_decay)
        self.xp = next(iter(params.values())).xp
        self.epoch = self.step = self.batch_index = 0
        self.epoch_sums: dict[str, float] = {}
        self.interval_sums: dict[str, float] = {}  # since the last log line
        self.logger = JsonLinesLogger(self.run_dir / "log.jsonl") if self.run_dir else None

    # ------------------------------------------------------------------ one step
    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def context(self) -> StepContext:
        spe = self.steps_per_epoch
        lr = self.lr_schedule(self.epoch + self.batch_index / spe)
        return StepContext(self.epoch, self.step, self.batch_index, spe, self.config.seed,
                           float(self.eps_schedule(self.step, spe)), lr, self.xp, self.plan)

    def train_step(self, images: Any, labels: Any) -> dict[str, float]:
        """One update on a batch at the current counters; advances the counters."""
        context = self.context()
        self.model.train()
        if self.plan.micro_batches(len(labels)) is not None:
            workers = self.plan.micro_batch_threads(
                self.model, get_array_module(images),
                parallel=self.method.parallel_micro_batches)
            result = accumulate_micro_batches(self.method, self.model, images, labels,
                                              context, self.plan.micro_batch, workers)
        else:
            result = self.method.compute_step(self.model, images, labels, context)
        metrics = dict(result.metrics)
        if result.gradients is not None:
            gradients = dict(result.gradients)
            metrics["grad_norm"] = clip_by_global_norm(gradients, self.config.grad_clip)
            self.optimizer.lr = context.lr
            self.optimizer.step(gradients)
        self.method.after_update(self.model, context)
        self.step += 1
        self.batch_index += 1
        return {"lr": context.lr, "eps": context.eps, **metrics}

    # ------------------------------------------------------------------ the loop
    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train until ``config.epochs`` are done, or stop (with a checkpoint) once the
        global step reaches ``max_steps``. Returns the last epoch's record."""
        spe, total = self.steps_per_epoch, self.config.epochs * self.steps_per_epoch
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        bar = ProgressBar(total, self.step, f"{self.method.name}",
                          enabled=False if self.quiet else None)
        self._log({"event": "resume" if self.step else "start", "epoch": self.epoch,
                   "step": self.step, "steps_per_epoch": spe, "total_steps": total})
        last_epoch: dict[str, Any] = {}
        interval_start = time.perf_counter()
        try:
            while self.epoch < self.config.epochs:
                epoch_start = time.perf_counter()
                for images, labels in self.loader.epoch(self.epoch, start=self.batch_index):
                    if max_steps is not None and self.step >= max_steps:
                        self.save_checkpoint()
                        return last_epoch
                    metrics = self.train_step(images, labels)
                    count = len(labels)
                    _accumulate(self.interval_sums, metrics, count)
                    _accumulate(self.epoch_sums, metrics, count)
                    bar.update(1, loss=metrics.get("loss"), acc=metrics.get("accuracy"),
                               eps=metrics["eps"], lr=metrics["lr"],
                               **{short: metrics[key] for key, short in _EXTRA_BAR.items()
                                  if key in metrics})
                    if self.step % self.config.log_every == 0:
                        elapsed = time.perf_counter() - interval_start
                        examples = self.interval_sums["examples"]
                        self._log({"event": "step", "epoch": self.epoch, "step": self.step,
                                   "batch": self.batch_index, **_means(self.interval_sums),
                                   "examples_per_second": examples / elapsed})
                        self.interval_sums, interval_start = {}, time.perf_counter()
                    if self.config.checkpoint_every and \
                            self.step % self.config.checkpoint_every == 0:
                        self.save_checkpoint()
                last_epoch = self._finish_epoch(time.perf_counter() - epoch_start)
        finally:
            bar.close()
        if self.run_dir is not None:
            self.save_checkpoint(self.run_dir / "model.h5")
        return last_epoch

    def _finish_epoch(self, seconds: float) -> dict[str, Any]:
        record: dict[str, Any] = {"event": "epoch", "epoch": self.epoch, "step": self.step}
        record.update({f"train_{k}": v for k, v in _means(self.epoch_sums).items()})
        record["epoch_seconds"] = seconds
        if self.evaluate is not None:
            record.update(self.evaluate(self.model))
        self._log(record)
        self.epoch, self.batch_index, self.epoch_sums = self.epoch + 1, 0, {}
        if self.config.checkpoint_each_epoch:
            self.save_checkpoint()
        return record

    def _log(self, record: dict[str, Any]) -> None:
        if self.logger is not None:
            self.logger.log(record)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the full training state (atomically); default ``checkpoint-<step>.h5``."""
        if path is None:
            if self.run_dir is None:
                return None
            path = self.run_dir / f"checkpoint-{self.step:08d}.h5"
        counters = {"seed": self.config.seed, "epoch": self.epoch, "step": self.step,
                    "batch_index": self.batch_index, "epoch_sums": self.epoch_sums,
                    "interval_sums": self.interval_sums,
                    "rng": "counter-based: random_stream(seed, epoch, step, name)"}
        written = save_checkpoint(
            path, self.model, architecture=self.architecture,
            config={"trainer": asdict(self.config), "run": self.run_config},
            method={"name": self.method.name, "options": self.method.options()},
            counters=counters, optimizer_state=self.optimizer.state_dict(),
            method_state=self.method.state_dict())
        self._prune_checkpoints()
        return written

    def _prune_checkpoints(self) -> None:
        if self.run_dir is None or not self.config.keep_checkpoints:
            return
        found = sorted((int(m.group(1)), p) for p in self.run_dir.iterdir()
                       if (m := _CHECKPOINT.match(p.name)))
        for _, old in found[:-self.config.keep_checkpoints]:
            old.unlink(missing_ok=True)

    def restore(self, checkpoint: Checkpoint | str | Path) -> None:
        """Load model, optimiser, method and counters from a checkpoint to continue."""
        if not isinstance(checkpoint, Checkpoint):
            checkpoint = load_checkpoint(checkpoint)
        self.model.load_state_dict(checkpoint.model.state_dict())
        self.optimizer.load_state_dict(checkpoint.optimizer_state)
        self.method.load_state_dict(checkpoint.method_state)
        counters = checkpoint.counters
        self.epoch, self.step = int(counters["epoch"]), int(counters["step"])
        self.batch_index = int(counters["batch_index"])
        self.epoch_sums = {k: float(v) for k, v in counters.get("epoch_sums", {}).items()}
        self.interval_sums = {k: float(v)
                              for k, v in counters.get("interval_sums", {}).items()}
        if self.logger is not None:
            self.logger.truncate_after(self.step)


def _accumulate(sums: dict[str, float], metrics: dict[str, Any], count: int) -> None:
    """Add count-weighted metric values (None values are skipped)."""
    sums["examples"] = sums.get("examples", 0.0) + count
    for key, value in metrics.items():
        if value is not None:
            sums[key] = sums.get(key, 0.0) + float(value) * count


def _means(sums: dict[str, float]) -> dict[str, float]:
    examples = sums.get("examples", 0.0) or 1.0
    return {k: v / examples for k, v in sums.items() if k != "examples"}
