"""A problem with known answers for the GLS estimators: a quadratic in one named parameter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.training.perturbation import ParameterLayout


@dataclass
class Quadratic:
    """L(θ) = ½ θᵀAθ + bᵀθ over one named parameter "theta" of length d; ∇L = Aθ + b."""

    matrix: np.ndarray
    offset: np.ndarray
    center: np.ndarray

    @property
    def layout(self) -> ParameterLayout:
        return ParameterLayout(["theta"], [self.center.shape])

    @property
    def gradient(self) -> np.ndarray:
        return self.matrix @ self.center + self.offset

    def loss_of(self, params: dict[str, Tensor]) -> Tensor:
        """Per-member losses (P,) for params {"theta": (P, d)}."""
        theta = params["theta"]
        a_theta = ops.matmul(theta, Tensor(self.matrix))
        linear = ops.matmul(theta, Tensor(self.offset.reshape(-1, 1)))
        return ops.sum(a_theta * theta, axis=-1) * 0.5 + linear.reshape(-1)

    def value(self, theta: np.ndarray) -> float:
        return float(0.5 * theta @ self.matrix @ theta + self.offset @ theta)


@pytest.fixture
def quadratic() -> Quadratic:
    rng = np.random.default_rng(7)
    d = 6
    factor = rng.normal(size=(d, d))
    matrix = factor @ factor.T / d + np.eye(d)
    return Quadratic(matrix, rng.normal(size=d), rng.normal(size=d))

