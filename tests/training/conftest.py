"""Problems with known answers for the GLS estimators: a quadratic and the Fig. 3a toy."""

from __future__ import annotations

from dataclasses import dataclass, field

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



@dataclass
class ToyBound:
    """The paper's Fig. 3a: the DeepPoly lower bound l(w) of y = ReLU(x + w) + 1 over
    x ∈ [−1, 1], computed by ``compute_bounds`` for a population of biases w."""

    layout: ParameterLayout = field(
        default_factory=lambda: ParameterLayout(["0.bias"], [(1,)]))

    def loss_of(self, params: dict[str, Tensor]) -> Tensor:
        from nobound.analysis.toy import toy_network
        from nobound.bounds import Box, compute_bounds

        bias = params["0.bias"]
        population = bias.shape[0]
        net = toy_network()
        full = {name: Tensor(np.broadcast_to(p.data, (population, *p.shape)).copy())
                for name, p in net.named_parameters()}
        full["0.bias"] = bias
        region = Box(Tensor(np.full((1, 1), -1.0)), Tensor(np.full((1, 1), 1.0)))
        lower = compute_bounds(net, region, method="deeppoly", params=full).lower
        return lower.reshape(population)


@pytest.fixture
def toy_bound() -> ToyBound:
    return ToyBound()


class TinyTraining:
    """Three separable classes of 8×8 images (a bright bar per class) and cnn3_tiny."""

    bound_options = {"alpha-crown": {"alpha_steps": 1, "alpha_step_size": 0.5,
                                     "alpha_init": 0.5}}

    def __init__(self, count: int = 48, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, 3, count)
        images = 0.1 * rng.uniform(size=(count, 1, 8, 8))
        for i, k in enumerate(self.labels):
            images[i, 0, 2 * k + 1:2 * k + 3, 1:7] += 0.8
        self.images = images.clip(0, 1)

    def model(self, seed: int = 0):
        from nobound.nn.init import ibp_init
        from nobound.nn.zoo import build_model

        model = build_model("cnn3_tiny", (1, 8, 8), 3, dtype=np.float64)
        return ibp_init(model, seed)

    def trainer(self, model, method, *, lr: float, eps: float = 0.02, epochs: int = 2,
                run_dir=None, checkpoint_every: int = 0, grad_clip: float = 10.0):
        from nobound.data.loader import BatchLoader
        from nobound.training.trainer import Trainer, TrainerConfig

        loader = BatchLoader((self.images, self.labels), 16, seed=0, dtype=np.float64)
        config = TrainerConfig(epochs=epochs, lr=lr, eps=eps, grad_clip=grad_clip,
                               log_every=1, checkpoint_every=checkpoint_every)
        return Trainer(model, method, loader, config, run_dir=run_dir, quiet=True)

    def loss(self, model, relaxation: str, eps: float = 0.02) -> float:
        from nobound.training.certified_loss import certified_loss

        return float(certified_loss(model, self.images, self.labels, eps, relaxation,
                                    bound_options=self.bound_options.get(relaxation)
                                    ).loss.data)


@pytest.fixture
def tiny_training() -> TinyTraining:
    return TinyTraining()
