"""Figures of the paper drawn from nobound's numbers (matplotlib is an optional extra).

* :func:`plot_relu_relaxations` — Fig. 2: IBP and DeepPoly relaxations of one ReLU;
* :func:`plot_toy` — Fig. 3: the toy landscapes and their Gaussian smoothing;
* :func:`plot_landscape` — Fig. 4: original and smoothed loss along a direction;
* :func:`plot_pgpe_surfaces` — Figs. 8/10: the loss surface as PGPE estimates it;
* :func:`plot_tightness` — certified accuracy over the radius per relaxation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'nobound[plot]'") from error
    return plt


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    _pyplot().close(figure)
    return path


def plot_relu_relaxations(path: str | Path, lower: float = -1.0, upper: float = 1.5) -> Path:
    """Fig. 2: the IBP box and DeepPoly's two choices of lower slope for l < 0 < u."""
    from nobound.autodiff.tensor import Tensor
    from nobound.bounds.deeppoly import relax_relu as deeppoly_relaxation

    plt = _pyplot()
    v = np.linspace(lower, upper, 200)
    relu = np.maximum(v, 0)
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    axes[0].fill_between(v, 0, max(upper, 0), color="tab:orange", alpha=0.3, label="IBP box")
    axes[0].set_title(f"IBP: ReLU(l) ≤ ReLU(v) ≤ ReLU(u), l={lower}, u={upper}")
    relaxation = deeppoly_relaxation(Tensor(np.array([lower])), Tensor(np.array([upper])))
    upper_slope = upper / (upper - lower)
    chosen = float(np.asarray(relaxation.lower_slope.data).reshape(-1)[0])
    for slope, colour in ((0.0, "tab:blue"), (1.0, "tab:green")):
        label = f"λ = {slope:g}" + (" (area heuristic)" if slope == chosen else "")
        axes[1].fill_between(v, slope * v, upper_slope * (v - lower), color=colour,
                             alpha=0.25 if slope == chosen else 0.08, label=label)
    axes[1].set_title("DeepPoly: λv ≤ ReLU(v) ≤ u(v − l)/(u − l)  (eq. 5)")
    for axis in axes:
        axis.plot(v, relu, "k", lw=2, label="ReLU")
        axis.set_xlabel("v")
        axis.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def plot_toy(path: str | Path, sigmas: Sequence[float] = (0.25, 0.5, 1.0)) -> Path:
    """Fig. 3: (a) the DeepPoly toy bound and its smoothing; (b) the sensitivity toy."""
    from nobound.analysis.toy import (
        deeppoly_toy_bound,
        smoothed_sensitivity_toy,
        smoothed_toy_bound,
    )

    plt = _pyplot()
    w = np.linspace(-2, 2, 401)
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    axes[0].plot(w, deeppoly_toy_bound(w), "k", label="original (DeepPoly, computed)")
    axes[0].plot(w, smoothed_toy_bound(w, 0.5), label="smoothed, σ = 0.5")
    axes[0].set_title("(a) lower bound of ReLU(x + w) + 1, x ∈ [−1, 1]")
    wide = np.linspace(-3, 3, 601)
    axes[1].plot(wide, smoothed_sensitivity_toy(wide, 0.0), "k", label="original")
    for sigma in sigmas:
        axes[1].plot(wide, smoothed_sensitivity_toy(wide, sigma), label=f"σ = {sigma}")
    axes[1].set_title("(b) sensitivity: a bad local minimum")
    for axis in axes:
        axis.set_xlabel("w")
        axis.legend(fontsize=8)
    return _save(figure, path)


def plot_landscape(curves: Sequence[Any], path: str | Path) -> Path:
    """Fig. 4: one panel per σ, one line (with its confidence band) per relaxation."""
    plt = _pyplot()
    sigmas = sorted({curve.sigma for curve in curves})
    figure, axes = plt.subplots(1, len(sigmas), figsize=(4 * len(sigmas), 3.4), squeeze=False)
    for axis, sigma in zip(axes[0], sigmas, strict=True):
        for curve in (c for c in curves if c.sigma == sigma):
            axis.plot(curve.offsets, curve.mean, label=curve.relaxation)
            axis.fill_between(curve.offsets, curve.band_low, curve.band_high, alpha=0.25)
        axis.set_title("original" if sigma == 0 else f"σ = {sigma:g}")
        axis.set_xlabel("step along direction")
        axis.set_ylabel("loss / loss at 0")
        axis.legend(fontsize=8)
    return _save(figure, path)


def _line_chart(lines: Sequence[tuple[Any, Any, str]], x_label: str, y_label: str,
                path: str | Path, size: tuple[float, float], legend_size: int) -> Path:
    """One panel of labelled lines, each given as (x values, y values, label)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=size)
    for x_values, y_values, label in lines:
        axis.plot(x_values, y_values, label=label)
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.legend(fontsize=legend_size)
    return _save(figure, path)


def plot_pgpe_surfaces(surfaces: Sequence[Any], path: str | Path) -> Path:
    """Figs. 8/10: one line per (population size, σ), offset vertically as in the paper."""
    # the vertical offset is spacing only, as the paper notes
    lines = [(curve.offsets, np.asarray(curve.mean) + 0.02 * rank,
              f"n_ps = {size}, σ = {curve.sigma:g}")
             for rank, (size, curve) in enumerate(surfaces)]
    return _line_chart(lines, "step along direction", "estimated smoothed loss (offset)",
                       path, size=(5.5, 3.8), legend_size=7)


def plot_tightness(curves: Sequence[Any], path: str | Path) -> Path:
    """Certified accuracy over the radius, AUC in the legend."""
    lines = [(curve.radii, curve.certified_accuracy,
              f"{curve.relaxation} (AUC {curve.auc:.3f})") for curve in curves]
    return _line_chart(lines, "ε", "certified accuracy", path, size=(5, 3.6), legend_size=8)
