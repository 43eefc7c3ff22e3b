"""Tightness of a relaxation: the AUC of certified accuracy over the radius (Jovanović et al.).

For radii 0 = ε_0 < ε_1 < … < ε_n = ε_max, let CA_r(ε) be the fraction of test inputs that
are classified correctly *and* whose margin lower bounds are all > 0 under relaxation r at
radius ε. The tightness score is the normalised area under that curve,

    AUC_r = (1 / ε_max) ∫_0^{ε_max} CA_r(ε) dε     (trapezoid rule on the grid),

between 0 and the natural accuracy. A tighter relaxation certifies more inputs at every
radius and so has a larger AUC; the paper cites the empirical order
IBP < HBox < CROWN-IBP < DeepPoly (§2.2, "Relaxation Tightness").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nobound.autodiff import no_grad
from nobound.backend import to_numpy, unwrap
from nobound.nn.module import Module


@dataclass
class TightnessCurve:
    relaxation: str
    radii: list[float]
    certified_accuracy: list[float]
    auc: float
    mean_margin_width: float  # mean (upper − lower) of the margins at the largest radius


def certified_fraction(model: Module, images: Any, labels: Any, eps: float,
                       relaxation: str, batch_size: int = 128, low: float = 0.0,
                       high: float = 1.0) -> tuple[float, float]:
    """(certified accuracy, mean margin bound width) at radius ``eps``."""
    from nobound.autodiff.tensor import Tensor
    from nobound.bounds import compute_bounds, linf_ball, margin_spec

    certified, widths = 0, []
    with no_grad():
        for start in range(0, len(labels), batch_size):
            x = Tensor(images[start:start + batch_size])
            y = unwrap(labels[start:start + batch_size])
            logits = model(x)
            correct = to_numpy(unwrap(logits).argmax(axis=-1) == y)
            result = compute_bounds(model, linf_ball(x, eps, low=low, high=high),
                                    method=relaxation, spec=margin_spec(y, logits.shape[-1]))
            lower, upper = to_numpy(result.lower.data), to_numpy(result.upper.data)
            certified += int(np.sum(correct & (lower > 0).all(axis=-1)))
            widths.append((upper - lower).mean(axis=-1))
    return certified / len(labels), float(np.concatenate(widths).mean())


def tightness(model: Module, images: Any, labels: Any, relaxations: Sequence[str],
              max_eps: float, points: int = 11, batch_size: int = 128) -> list[TightnessCurve]:
    """Certified accuracy over ``points`` radii in [0, max_eps] and its AUC, per relaxation."""
    if max_eps <= 0:
        raise ValueError(f"max_eps must be positive, got {max_eps}")
    if points < 2:
        raise ValueError("tightness needs at least 2 radii")
    radii = np.linspace(0.0, max_eps, points)
    was_training = model.training
    model.eval()
    curves = []
    try:
        for relaxation in relaxations:
            accuracies, width = [], 0.0
            for eps in radii:
                accuracy, width = certified_fraction(model, images, labels, float(eps),
                                                     relaxation, batch_size)
                accuracies.append(accuracy)
            auc = float(np.trapezoid(accuracies, radii) / max_eps)
            curves.append(TightnessCurve(relaxation, radii.tolist(), accuracies, auc, width))
    finally:
        model.train(was_training)
    return curves
