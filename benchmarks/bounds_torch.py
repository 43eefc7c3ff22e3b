"""The relaxations of ``nobound.bounds`` written in PyTorch: the baseline of ``bounds_speed.py``.

Same methods, same rules and the same shortcuts as nobound, so the two compute the same
numbers (``bounds_speed.py`` checks it before timing) and the timing compares engines:

* IBP (eq. 3): centre/radius through every layer, the margin specification C folded into
  the last Linear layer (W' = C W, b' = C b).
* HBox: centre, generators over the input error terms (exact through affine maps), box
  radius; an unstable ReLU becomes the box [0, u]; the batch is chunked as nobound does.
* DeepPoly/CROWN (eq. 4, 5): every ReLU input bounded by full back-substitution to the
  input, λ = 1[u > −l], s = u/(u − l), t = −s l. As nobound: the first ReLU's input
  (no ReLU and one dense map before it) is bounded exactly by eq. (3); later ones first get
  an interval pre-check from the previous ReLU's bounds and only the neurons it leaves
  unstable get a back-substitution row (rows padded to the batch maximum, identity rows
  when more than 3/4 are unstable); rows are processed in chunks of
  ``budget / (4 · 2 · B · max feature size · 6)`` bytes, nobound's no-gradient policy.
* CROWN-IBP: IBP bounds on the ReLU inputs, one back-substitution of C.
* alpha-CROWN: in ``bounds_torch_alpha.py``.

Every method fills an optional ``recorded`` dict with the bounds of each ReLU's input.
Shapes: back-substitution coefficients (S, B', R, *features) with S bound sides (1 while
lower and upper coincide) and B' = 1 while the rows do not depend on the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
from bounds_torch_network import TorchLayer, fold_spec

SIDES = ("lower", "upper")
DENSE_FRACTION = 0.75
DEFAULT_MEMORY_BUDGET = 1 << 30
Slopes = dict[str, dict[int, torch.Tensor]]  # side → ReLU index → α (B, R, *neurons)
Recorded = dict[int, tuple[torch.Tensor, torch.Tensor]]  # ReLU index → (l, u) of its input


@dataclass
class Relaxation:
    """λ v ≤ ReLU(v) ≤ s v + t (eq. 5); tensors (B, *neurons)."""

    lower_slope: torch.Tensor
    upper_slope: torch.Tensor
    upper_intercept: torch.Tensor
    unstable: torch.Tensor


def deeppoly_relaxation(lower: torch.Tensor, upper: torch.Tensor) -> Relaxation:
    """Eq. (5) with the area heuristic λ = 1[u > −l]; exact for stable neurons."""
    unstable = (lower < 0) & (upper > 0)
    active = (lower >= 0).to(lower.dtype)
    width = torch.where(unstable, upper - lower, torch.ones_like(lower))
    slope = torch.where(unstable, upper / width, active)
    intercept = torch.where(unstable, -(slope * lower), torch.zeros_like(lower))
    lower_slope = torch.where(unstable, (upper > -lower).to(lower.dtype), active)
    return Relaxation(lower_slope, slope, intercept, unstable)


def interval_forward(layers: list[TorchLayer], center: torch.Tensor, radius: torch.Tensor,
                     spec: torch.Tensor | None = None, recorded: dict | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (3) through ``layers``: ReLU by its interval; C folded into the last layer."""
    for position, layer in enumerate(layers):
        if layer.kind == "relu":
            lower, upper = center - radius, center + radius
            if recorded is not None:
                recorded[layer.index] = (lower, upper)
            lower, upper = lower.clamp(min=0), upper.clamp(min=0)
            center, radius = (upper + lower) * 0.5, (upper - lower) * 0.5
        elif spec is not None and position == len(layers) - 1:
            weight, bias = fold_spec(layer, spec)
            center = (weight @ center.unsqueeze(-1)).squeeze(-1) + bias
            radius = (weight.abs() @ radius.unsqueeze(-1)).squeeze(-1)
        else:
            center, radius = layer.forward(center), layer.forward_abs(radius)
    return center - radius, center + radius


def ibp(layers: list[TorchLayer], lower: torch.Tensor, upper: torch.Tensor,
        spec: torch.Tensor, recorded: Recorded | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    return interval_forward(layers, (upper + lower) * 0.5, (upper - lower) * 0.5, spec,
                            recorded)


def hbox(layers: list[TorchLayer], lower: torch.Tensor, upper: torch.Tensor,
         spec: torch.Tensor, recorded: Recorded | None = None,
         budget: int = DEFAULT_MEMORY_BUDGET) -> tuple[torch.Tensor, torch.Tensor]:
    """Hybrid zonotope c + G ε + β ⊙ ν, batch chunks of budget / (4 · m · largest · 3)."""
    inputs = prod(lower.shape[1:])
    largest = max([inputs] + [prod(layer.output_shape) for layer in layers])
    chunk = max(1, budget // (lower.element_size() * inputs * largest * 3))
    pieces, parts = [], []
    for start in range(0, lower.shape[0], chunk):
        parts.append({} if recorded is not None else None)
        pieces.append(_hbox(layers, lower[start:start + chunk], upper[start:start + chunk],
                            spec[start:start + chunk], parts[-1]))
    if recorded is not None:
        recorded.update({index: tuple(torch.cat([part[index][side] for part in parts])
                                      for side in (0, 1)) for index in parts[0]})
    return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])


def _hbox(layers: list[TorchLayer], lower: torch.Tensor, upper: torch.Tensor,
          spec: torch.Tensor, recorded: Recorded | None) -> tuple[torch.Tensor, torch.Tensor]:
    shape = tuple(lower.shape[1:])
    center, radius = (upper + lower) * 0.5, (upper - lower) * 0.5
    inputs = prod(shape)
    generators = torch.eye(inputs).reshape((1, inputs) + shape) * radius.unsqueeze(1)
    box_radius = None
    for position, layer in enumerate(layers):
        if layer.kind == "relu":
            spread = generators.abs().sum(dim=1)
            spread = spread if box_radius is None else spread + box_radius
            lower, upper = center - spread, center + spread
            if recorded is not None:
                recorded[layer.index] = (lower, upper)
            active = lower >= 0
            unstable = (lower < 0) & (upper > 0)
            half_upper = torch.where(unstable, upper * 0.5, torch.zeros_like(upper))
            center = torch.where(active, center, half_upper)
            box_radius = half_upper if box_radius is None else \
                torch.where(active, box_radius, half_upper)
            generators = generators * active.unsqueeze(1).to(generators.dtype)
        elif position == len(layers) - 1:
            weight, bias = fold_spec(layer, spec)
            center = (weight @ center.unsqueeze(-1)).squeeze(-1) + bias
            generators = generators @ weight.transpose(-1, -2)
            box_radius = (weight.abs() @ box_radius.unsqueeze(-1)).squeeze(-1)
        else:
            center, generators = layer.forward(center), layer.linear(generators)
            box_radius = None if box_radius is None else layer.forward_abs(box_radius)
    spread = generators.abs().sum(dim=1) + box_radius
    return center - spread, center + spread


def relu_back_step(coefficients: torch.Tensor, bias: torch.Tensor | None,
                   relaxation: Relaxation,
                   row_slopes: dict[str, torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower side: A⁺λ + A⁻s and A⁻t; upper side: A⁺s + A⁻λ and A⁺t (eq. 5)."""
    upper_slope = relaxation.upper_slope.unsqueeze(1)
    intercept = relaxation.upper_intercept.flatten(1).unsqueeze(-1)  # (B, n, 1)
    new_coefficients, new_bias = [], []
    for position, side in enumerate(SIDES):
        own = coefficients[min(position, coefficients.shape[0] - 1)]  # (B', R, *n)
        lam = row_slopes[side] if row_slopes is not None else \
            relaxation.lower_slope.unsqueeze(1)
        if side == "lower":
            slope = torch.where(own >= 0, lam, upper_slope)
            part = own.clamp(max=0)
        else:
            slope = torch.where(own >= 0, upper_slope, lam)
            part = own.clamp(min=0)
        new_coefficients.append(own * slope)
        new_bias.append((part.flatten(2) @ intercept).squeeze(-1))
    coefficients, terms = torch.stack(new_coefficients), torch.stack(new_bias)
    return coefficients, terms if bias is None else bias + terms


def back_substitute(layers: list[TorchLayer], end: int, rows: torch.Tensor,
                    relaxations: dict[int, Relaxation],
                    row_slopes: Slopes | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(A, b) with A · x + b bounding ``rows`` · z_end; rows (1, B', R, *shape of z_end)."""
    coefficients, bias = rows, None
    for layer in reversed(layers[:end + 1]):
        if layer.kind == "relu":
            slopes = None if row_slopes is None else \
                {side: row_slopes[side][layer.index] for side in SIDES}
            coefficients, bias = relu_back_step(coefficients, bias, relaxations[layer.index],
                                                slopes)
            continue
        term = layer.bias_term(coefficients)
        if term is not None:
            bias = term if bias is None else bias + term
        coefficients = layer.backward(coefficients)
    return coefficients, bias


def concretize(coefficients: torch.Tensor, bias: torch.Tensor | None, center: torch.Tensor,
               radius: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2): min/max of A x + b over the box c ± r; (B, R) each."""
    matrix = coefficients.flatten(3)
    value = (matrix @ center.flatten(1).unsqueeze(-1)).squeeze(-1)  # (S, B, R)
    spread = (matrix.abs() @ radius.flatten(1).unsqueeze(-1)).squeeze(-1)
    if bias is not None:
        value = value + bias
    return value[0] - spread[0], value[-1] + spread[-1]


def rows_per_chunk(layers: list[TorchLayer], end: int, batch: int,
                   budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """nobound's chunk size without gradients: budget / (4 · 2 · B · max size · 6)."""
    sizes = [prod(layer.input_shape) for layer in layers[:end + 1]]
    sizes.append(prod(layers[end].output_shape))
    return max(1, int(budget // (4 * 2 * batch * max(sizes) * 6)))


def bound_rows(layers: list[TorchLayer], end: int, center: torch.Tensor,
               radius: torch.Tensor, make_rows, total: int,
               relaxations: dict[int, Relaxation]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds (B, total) of rows make_rows(start, stop) of node ``end``, chunked."""
    chunk = rows_per_chunk(layers, end, center.shape[0])
    lowers, uppers = [], []
    for start in range(0, total, chunk):
        coefficients, bias = back_substitute(layers, end, make_rows(start, min(start + chunk,
                                                                               total)),
                                             relaxations)
        lower, upper = concretize(coefficients, bias, center, radius)
        lowers.append(lower)
        uppers.append(upper)
    return torch.cat(lowers, dim=-1), torch.cat(uppers, dim=-1)


def exact_by_intervals(layers: list[TorchLayer], end: int) -> bool:
    before = layers[:end + 1]
    return not any(layer.kind == "relu" for layer in before) and \
        sum(layer.dense for layer in before) <= 1


def _identity_rows(count: int, start: int, shape: tuple[int, ...]) -> torch.Tensor:
    rows = torch.zeros(count, prod(shape))
    rows[torch.arange(count), torch.arange(start, start + count)] = 1
    return rows.reshape((1, 1, count) + shape)


def bound_node(layers: list[TorchLayer], end: int, center: torch.Tensor, radius: torch.Tensor,
               relaxations: dict[int, Relaxation],
               prior: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepPoly bounds of node ``end`` where the interval ``prior`` is unstable."""
    shape = layers[end].output_shape
    n, batch = prod(shape), center.shape[0]
    prior_lower, prior_upper = prior[0].reshape(batch, n), prior[1].reshape(batch, n)
    unstable = (prior_lower < 0) & (prior_upper > 0)
    count = int(unstable.sum(dim=-1).max())
    if count == 0:
        return prior
    if count > DENSE_FRACTION * n:
        lower, upper = bound_rows(layers, end, center, radius,
                                  lambda a, b: _identity_rows(b - a, a, shape), n, relaxations)
    else:
        order = torch.argsort((~unstable).to(torch.int8), dim=-1, stable=True)[:, :count]
        valid = torch.gather(unstable, 1, order).to(center.dtype)

        def make_rows(start: int, stop: int) -> torch.Tensor:
            one_hot = torch.zeros(batch, stop - start, n)
            one_hot.scatter_(2, order[:, start:stop].unsqueeze(-1),
                             valid[:, start:stop].unsqueeze(-1))
            return one_hot.reshape((1, batch, stop - start) + shape)

        lower, upper = bound_rows(layers, end, center, radius, make_rows, count, relaxations)
        slot = torch.where(unstable, torch.cumsum(unstable, dim=-1) - 1, 0)
        lower, upper = torch.gather(lower, 1, slot), torch.gather(upper, 1, slot)
    lower = torch.where(unstable, lower, prior_lower)
    upper = torch.where(unstable, upper, prior_upper)
    return lower.reshape((batch,) + shape), upper.reshape((batch,) + shape)


def deeppoly_relaxations(layers: list[TorchLayer], center: torch.Tensor, radius: torch.Tensor,
                         recorded: Recorded | None = None) -> dict[int, Relaxation]:
    """Every ReLU bounded (exactly by eq. 3, or pre-check + back-substitution) and relaxed;
    the bounds of the ReLU inputs go to ``recorded``."""
    relaxations: dict[int, Relaxation] = {}
    recorded = {} if recorded is None else recorded
    for layer in layers:
        if layer.kind != "relu":
            continue
        end = layer.index - 1
        if exact_by_intervals(layers, end):
            lower, upper = interval_forward(layers[:end + 1], center, radius)
        else:
            start = max(recorded, default=-1)
            if start >= 0:
                low, high = (bound.clamp(min=0) for bound in recorded[start])
                prior = interval_forward(layers[start + 1:end + 1], (high + low) * 0.5,
                                         (high - low) * 0.5)
            else:
                prior = interval_forward(layers[:end + 1], center, radius)
            lower, upper = bound_node(layers, end, center, radius, relaxations, prior)
        recorded[layer.index] = (lower, upper)
        relaxations[layer.index] = deeppoly_relaxation(lower, upper)
    return relaxations


def output_bounds(layers: list[TorchLayer], center: torch.Tensor, radius: torch.Tensor,
                  spec: torch.Tensor, relaxations: dict[int, Relaxation],
                  row_slopes: Slopes | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-substitute the rows of C (B, K, classes) to the input and concretise,
    in row chunks as for the intermediate layers."""
    end = len(layers) - 1
    chunk = rows_per_chunk(layers, end, center.shape[0])
    lowers, uppers = [], []
    for start in range(0, spec.shape[1], chunk):
        stop = start + chunk
        slopes = None if row_slopes is None else \
            {side: {i: a[:, start:stop] for i, a in per.items()}
             for side, per in row_slopes.items()}
        coefficients, bias = back_substitute(layers, end, spec[:, start:stop].unsqueeze(0),
                                             relaxations, slopes)
        lower, upper = concretize(coefficients, bias, center, radius)
        lowers.append(lower)
        uppers.append(upper)
    return torch.cat(lowers, dim=-1), torch.cat(uppers, dim=-1)


def deeppoly(layers: list[TorchLayer], lower: torch.Tensor, upper: torch.Tensor,
             spec: torch.Tensor, recorded: Recorded | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    center, radius = (upper + lower) * 0.5, (upper - lower) * 0.5
    relaxations = deeppoly_relaxations(layers, center, radius, recorded)
    return output_bounds(layers, center, radius, spec, relaxations)


def crown_ibp(layers: list[TorchLayer], lower: torch.Tensor, upper: torch.Tensor,
              spec: torch.Tensor, recorded: Recorded | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    center, radius = (upper + lower) * 0.5, (upper - lower) * 0.5
    recorded = {} if recorded is None else recorded
    interval_forward(layers, center, radius, recorded=recorded)
    relaxations = {index: deeppoly_relaxation(*bounds) for index, bounds in recorded.items()}
    return output_bounds(layers, center, radius, spec, relaxations)


METHODS = {"ibp": ibp, "hbox": hbox, "crown-ibp": crown_ibp, "deeppoly": deeppoly}
