"""The toy landscapes of the paper's Fig. 3 (§3.1–3.2).

Fig. 3a — discontinuity. The one-neuron network y = ReLU(x + w) + 1 on x ∈ [−1, 1]. The
ReLU input lies in [w − 1, w + 1]; DeepPoly's lower slope λ = 1[u > −l] = 1[w > 0]
(eq. 5) gives the lower bound

    l(w) = 1 + 1[w > 0] · (w − 1),

which jumps from 1 to w at w = 0. :func:`deeppoly_toy_bound` computes it with nobound's
own DeepPoly on a population of networks, one per w, in a single call. Its Gaussian
smoothing has the closed form (with Φ, φ the standard normal cdf and pdf)

    L_σ(w) = E l(w + ε) = 1 + (w − 1) Φ(w/σ) + σ φ(w/σ),

continuous and differentiable everywhere (Theorem 3.1).

Fig. 3b — sensitivity. The paper does not give its function; ours has the same features:
a quadratic bowl with the global minimum at w = 1 plus a Gaussian dip that creates a bad
local minimum near w = −0.66:

    f(w) = (w − 1)²/8 − a · exp(−(w − c)² / (2 s²)),   a = 0.3, c = −0.75, s = 0.25.

Gaussian smoothing is analytic: (w − 1)²/8 + σ²/8 − a s/√(s² + σ²) exp(−(w − c)²/(2(s² + σ²))).
With σ = 0.25 the local minimum survives (near −0.44), σ = 0.5 removes it with the
global minimum kept near 0.98, and σ = 1.0 moves the minimum to ≈ 0.87 — too much smoothing
misaligns the minimum, as the paper describes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor
from nobound.nn import Linear, ReLU, Sequential

SENSITIVITY_DIP = {"depth": 0.3, "centre": -0.75, "width": 0.25}


def toy_network(dtype: Any = np.float64) -> Sequential:
    """y = ReLU(x + w) + 1 as Linear(1, 1; weight 1, bias w) → ReLU → Linear(1, 1; 1, 1)."""
    net = Sequential(Linear(1, 1, dtype=dtype), ReLU(), Linear(1, 1, dtype=dtype))
    net.layers[0].weight.data[...] = 1.0
    net.layers[2].weight.data[...] = 1.0
    net.layers[2].bias.data[...] = 1.0
    return net


def deeppoly_toy_bound(w_values: Any, method: str = "deeppoly") -> np.ndarray:
    """The lower bound of y over x ∈ [−1, 1] for each w, via ``compute_bounds``.

    The w values become a population axis: every parameter gets a leading axis P.
    """
    from nobound.bounds import Box, compute_bounds

    w_values = np.asarray(w_values, dtype=np.float64).reshape(-1)
    population = w_values.size
    net = toy_network()
    params = {name: Tensor(np.broadcast_to(p.data, (population, *p.shape)).copy())
              for name, p in net.named_parameters()}
    params["0.bias"] = Tensor(w_values.reshape(population, 1))
    region = Box(Tensor(np.full((1, 1), -1.0)), Tensor(np.full((1, 1), 1.0)))
    result = compute_bounds(net, region, method=method, params=params)
    return np.asarray(result.lower.data).reshape(population)


def toy_bound_closed_form(w: Any) -> np.ndarray:
    """l(w) = 1 + 1[w > 0] (w − 1)."""
    w = np.asarray(w, dtype=np.float64)
    return 1.0 + (w > 0) * (w - 1.0)


def smoothed_toy_bound(w: Any, sigma: float) -> np.ndarray:
    """L_σ(w) = 1 + (w − 1) Φ(w/σ) + σ φ(w/σ)."""
    w = np.asarray(w, dtype=np.float64)
    z = w / sigma
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return 1.0 + (w - 1.0) * cdf + sigma * pdf


def sampled_smoothing(function: Any, w: Any, sigma: float, samples: int,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo E f(w + ε), ε ~ N(0, σ²), with the standard error of the estimate."""
    from nobound.backend import random_stream

    w = np.asarray(w, dtype=np.float64).reshape(-1)
    noise = random_stream(seed, name="toy-smoothing").normal(0.0, sigma, (samples, 1))
    values = np.asarray(function((w[None, :] + noise).reshape(-1))).reshape(samples, w.size)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / math.sqrt(samples)


def sensitivity_toy(w: Any) -> np.ndarray:
    """f(w) = (w − 1)²/8 − a exp(−(w − c)²/(2 s²)) (Fig. 3b analogue)."""
    return smoothed_sensitivity_toy(w, 0.0)


def smoothed_sensitivity_toy(w: Any, sigma: float) -> np.ndarray:
    """E f(w + ε) in closed form (a Gaussian convolved with a Gaussian stays Gaussian)."""
    w = np.asarray(w, dtype=np.float64)
    depth, centre, width = (SENSITIVITY_DIP[k] for k in ("depth", "centre", "width"))
    spread = width * width + sigma * sigma
    return ((w - 1.0) ** 2 / 8.0 + sigma * sigma / 8.0
            - depth * width / math.sqrt(spread) * np.exp(-(w - centre) ** 2 / (2 * spread)))


def local_minima(w: Any, values: Any) -> list[float]:
    """Grid points that are strictly lower than both neighbours."""
    w, values = np.asarray(w), np.asarray(values)
    inner = (values[1:-1] < values[:-2]) & (values[1:-1] < values[2:])
    return [float(x) for x in w[1:-1][inner]]
