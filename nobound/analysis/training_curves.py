"""Training curves from a run's ``log.jsonl``: loss, batch accuracies, eps and sigma.

The trainer writes one JSON object per line: ``event: "step"`` lines (means over the last
``log_every`` steps: ``loss``, ``accuracy`` — natural —, ``certified_accuracy`` — every
margin lower bound > 0 —, ``eps``, ``lr``, RGS/PGPE's ``sigma``, …) and ``event: "epoch"``
lines (``train_*`` means, ``test_accuracy``). :func:`read_training_log` turns them into
series against the global step; :func:`plot_training_curves` draws four panels (loss;
accuracies; eps; sigma, or the lr when the method has no sigma). matplotlib is optional:
only plotting needs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

STEP_SERIES = ("loss", "robust_loss", "natural_loss", "accuracy", "certified_accuracy",
               "eps", "lr", "sigma", "examples_per_second")


def read_training_log(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """{"step": {name: values, "step": steps}, "epoch": {...}} from a JSON-lines log.

    Lines that do not parse (a run killed mid-line) are skipped; a metric missing from
    some lines is NaN there, so every series has one value per logged step.
    """
    rows: dict[str, list[dict[str, Any]]] = {"step": [], "epoch": []}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") in rows:
                rows[record["event"]].append(record)
    series: dict[str, dict[str, np.ndarray]] = {}
    for event, records in rows.items():
        names = sorted({k for r in records for k, v in r.items()
                        if isinstance(v, int | float) and not isinstance(v, bool)})
        series[event] = {name: np.array([_number(r.get(name)) for r in records])
                         for name in names}
    return series


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def plot_training_curves(path: str | Path, out: str | Path, title: str | None = None) -> Path:
    """Draw the curves of ``path`` into the image ``out`` (PNG, PDF, SVG by suffix)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise RuntimeError("plotting needs matplotlib (pip install 'nobound[plot]')") \
            from error
    series = read_training_log(path)
    steps = series["step"]
    if "step" not in steps or steps["step"].size == 0:
        raise ValueError(f"{path} has no step records to plot")
    x = steps["step"]
    epochs = series["epoch"]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    _panel(axes[0, 0], x, steps, ("loss", "robust_loss", "natural_loss"), "loss")
    _panel(axes[0, 1], x, steps, ("accuracy", "certified_accuracy"), "batch accuracy")
    if "test_accuracy" in epochs and epochs["test_accuracy"].size:
        axes[0, 1].plot(epochs["step"], epochs["test_accuracy"], "o-", label="test_accuracy")
        axes[0, 1].legend()
    _panel(axes[1, 0], x, steps, ("eps",), "eps")
    has_sigma = "sigma" in steps and np.isfinite(steps["sigma"]).any()
    _panel(axes[1, 1], x, steps, ("sigma",) if has_sigma else ("lr",),
           "sigma" if has_sigma else "learning rate", log=True)
    for axis in axes[1]:
        axis.set_xlabel("step")
    figure.suptitle(title or str(path))
    figure.tight_layout()
    out = Path(out)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def _panel(axis: Any, x: np.ndarray, steps: dict[str, np.ndarray], names: tuple[str, ...],
           label: str, log: bool = False) -> None:
    for name in names:
        if name in steps and np.isfinite(steps[name]).any():
            axis.plot(x, steps[name], label=name)
    axis.set_ylabel(label)
    if log and axis.lines and all(np.nanmin(line.get_ydata()) > 0 for line in axis.lines):
        axis.set_yscale("log")
    if len(axis.lines) > 1:
        axis.legend()
    axis.grid(alpha=0.3)
