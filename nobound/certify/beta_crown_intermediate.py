"""beta-CROWN's intermediate bounds: every hidden pre-activation of every sub-domain.

Layer by layer (k = 1 … H−1), the rows ±e_i of z_k's neurons are bounded through the
network truncated at z_k, whose ReLUs use the already tightened bounds of the layers below,
by the same back-substitution as the output rows (:mod:`nobound.certify.beta_crown`, module
docstring) and intersected with the bounds the sub-domain had; split neurons are clamped
again afterwards. Two ways:

* :func:`tighten_intermediate`: optimised (α, β) per row (alpha-CROWN's intermediate
  bounds, with split multipliers), rows for the neurons unstable in any sub-domain of the
  batch, optionally recording what proved each improved bound for the checker;
* :func:`deeppoly_intermediate`: DeepPoly's slopes and β = 0, one row per (sub-domain,
  neuron, side) that is unstable in its own sub-domain (many small input boxes).
"""

from __future__ import annotations

import math
import time

import numpy as np

from nobound.autodiff.ops._compiled import numba_kernels, suits_compiled_pass
from nobound.backend import get_array_module, to_numpy
from nobound.certify.beta_crown import (
    Array,
    Multipliers,
    SplitDomains,
    Weight,
    deeppoly_alpha,
    layer_weights,
    optimise,
    relaxation,
)
from nobound.exact.dense import DenseNetwork

ROWS_KERNELS = "nobound.certify._rows_numba"


def tighten_intermediate(network: DenseNetwork, domains: SplitDomains, steps: int = 10,
                         learning_rate: float = 0.1, records: list | None = None,
                         deadline: float = math.inf) -> SplitDomains:
    """Optimised (α, β) bounds on every hidden pre-activation, layer by layer, intersected
    with the given ones (alpha-CROWN's intermediate bounds, with split multipliers).

    Layer k's bounds are the bounds of ±z_k through the truncated network W_0 … W_k, whose
    ReLUs use the (already tightened) bounds of layers < k; only neurons still unstable in
    some sub-domain get rows. Each result is a valid bound on the sub-domain for any α, β,
    so the intersection is too; split neurons are clamped again afterwards. With
    ``records`` (a list), each bound that improved is appended as (sub-domain, k, neuron,
    side, α per layer < k, β per layer < k, value) — what a checker needs to re-derive it.
    ``deadline``: the time left is shared evenly by the layers still to tighten, each
    stopping its optimisation at its share (:func:`optimise`); every layer still gets at
    least its starting point's bound, so a late call costs one bound per layer.
    """
    if steps == 0 and records is None:
        return deeppoly_intermediate(network, domains)
    xp = get_array_module(domains.lower[0])
    lower = [lo.copy() for lo in domains.lower]
    upper = [hi.copy() for hi in domains.upper]
    count = lower[0].shape[0]
    for k in range(1, len(lower)):
        unstable = xp.flatnonzero(((lower[k] < 0) & (upper[k] > 0)).any(axis=0))
        if unstable.size == 0:
            continue
        truncated = DenseNetwork(network.weights[:k + 1], network.biases[:k + 1],
                                 network.input_shape, network.relu_layers[:k],
                                 network.relu_shapes[:k])
        part = SplitDomains(lower[:k], upper[:k], domains.signs[:k], domains.box_lower,
                            domains.box_upper)
        size = int(unstable.size)
        rows = xp.zeros((2 * size, lower[k].shape[1]), lower[k].dtype)
        rows[xp.arange(size), unstable] = 1.0
        rows[size + xp.arange(size), unstable] = -1.0
        objective = xp.broadcast_to(rows, (count, *rows.shape))
        now = time.perf_counter()
        layer_deadline = deadline if math.isinf(deadline) else \
            now + (deadline - now) / (len(lower) - k)
        bound, best = optimise(truncated, part, objective, xp.zeros((count, 2 * size)),
                               steps=steps, learning_rate=learning_rate,
                               deadline=layer_deadline)
        if records is not None:
            old_lower = lower[k][:, unstable].copy()
            old_upper = upper[k][:, unstable].copy()
        lower[k][:, unstable] = xp.maximum(lower[k][:, unstable], bound[:, :size])
        upper[k][:, unstable] = xp.minimum(upper[k][:, unstable], -bound[:, size:])
        if records is not None:
            for n, r in zip(*(to_numpy(a) for a in xp.nonzero(bound[:, :size] > old_lower)),
                            strict=True):
                records.append(_record(n, k, int(unstable[r]), 1, best, int(r),
                                       float(bound[n, r])))
            for n, r in zip(*(to_numpy(a) for a in xp.nonzero(-bound[:, size:] < old_upper)),
                            strict=True):
                records.append(_record(n, k, int(unstable[r]), -1, best, size + int(r),
                                       float(bound[n, size + r])))
        signs = domains.signs[k]
        lower[k] = xp.where(signs > 0, xp.maximum(lower[k], 0.0), lower[k])
        upper[k] = xp.where(signs < 0, xp.minimum(upper[k], 0.0), upper[k])
    return SplitDomains(lower, upper, domains.signs, domains.box_lower, domains.box_upper)


def deeppoly_intermediate(network: DenseNetwork, domains: SplitDomains) -> SplitDomains:
    """:func:`tighten_intermediate` with DeepPoly's slopes and β = 0 (``steps=0``), one row
    per neuron that is unstable *in its own* sub-domain.

    The batched optimiser gives every sub-domain the rows of the neurons unstable in any of
    them (a rectangular (N, K, n) batch); with many small boxes of few inputs (input
    splitting) most of those rows belong to neurons stable in their own box, so here the
    rows are the (sub-domain, neuron, side) triples themselves, each carrying its
    sub-domain's relaxation: the same back-substitution (module docstring, β = 0), the same
    numbers up to summation order, about as many rows as the neurons that need them.
    """
    xp = get_array_module(domains.lower[0])
    weights, biases = layer_weights(network, xp)
    lower = [lo.copy() for lo in domains.lower]
    upper = [hi.copy() for hi in domains.upper]
    count = lower[0].shape[0]
    box_lower = xp.broadcast_to(domains.box_lower, (count, weights[0].shape[1]))
    box_upper = xp.broadcast_to(domains.box_upper, box_lower.shape)
    # per hidden layer j < k, once its bounds are final: the lower slope, upper slope and
    # upper intercept (N, n_j) of each sub-domain's ReLUs (DeepPoly: α = [u > −l] if unstable)
    lines: list[tuple[Array, Array, Array]] = []
    for k in range(len(lower)):
        if k > 0:
            box, neuron = xp.nonzero((lower[k] < 0) & (upper[k] > 0))
            if box.size:
                box, neuron = xp.concatenate([box, box]), xp.concatenate([neuron, neuron])
                one = xp.ones(box.size // 2, lower[k].dtype)
                side = xp.concatenate([one, -one])
                bound = _one_hot_rows_bound(weights, biases, lines, k, box, neuron, side,
                                            box_lower, box_upper)
                half = box.size // 2
                lower[k][box[:half], neuron[:half]] = xp.maximum(
                    lower[k][box[:half], neuron[:half]], bound[:half])
                upper[k][box[half:], neuron[half:]] = xp.minimum(
                    upper[k][box[half:], neuron[half:]], -bound[half:])
            signs = domains.signs[k]
            lower[k] = xp.where(signs > 0, xp.maximum(lower[k], 0.0), lower[k])
            upper[k] = xp.where(signs < 0, xp.minimum(upper[k], 0.0), upper[k])
        unstable, slope, intercept = relaxation(lower[k], upper[k])
        lower_slope = xp.where(unstable, deeppoly_alpha(lower[k], upper[k]), slope)
        lines.append((lower_slope, slope, intercept))
    return SplitDomains(lower, upper, domains.signs, domains.box_lower, domains.box_upper)


def _one_hot_rows_bound(weights: list[Weight], biases: list[Array],
                        lines: list[tuple[Array, Array, Array]], k: int, box: Array,
                        neuron: Array, side: Array, box_lower: Array, box_upper: Array
                        ) -> Array:
    """Lower bound of side·z_k[neuron] on sub-domain ``box``, one per (box, neuron, side)
    row, by back-substitution through layers k … 0 with the relaxations ``lines``."""
    xp = get_array_module(side)
    dense = weights[k].dense
    through = side[:, None] * dense[neuron]          # Λ̂ = ±e_i W_k
    constant = side * biases[k][neuron]
    for j in range(k - 1, -1, -1):
        coefficient, constant = relu_rows_step(through, box, *lines[j], constant)
        constant = constant + coefficient @ biases[j]
        through = weights[j].rows_times(coefficient)
    return constant + (xp.maximum(through, 0) * box_lower[box]).sum(axis=1) \
        + (xp.minimum(through, 0) * box_upper[box]).sum(axis=1)


def relu_rows_step(through: Array, domain: Array, lower_slope: Array, slope: Array,
                   intercept: Array, constant: Array) -> tuple[Array, Array]:
    """One ReLU step of the back-substitution for rows that each belong to a sub-domain:
    Λ = Λ̂⁺ α + Λ̂⁻ s, const += Λ̂⁻·t (module docstring, β = 0), with row r reading the
    lines (N, n) of sub-domain ``domain[r]``. Returns (Λ, const); compiled in one pass when
    Numba is there (:mod:`nobound.certify._rows_numba`), else gathered and multiplied."""
    kernels = numba_kernels(ROWS_KERNELS)
    arrays = (through, lower_slope, slope, intercept, constant)
    if kernels is not None and suits_compiled_pass(through) and \
            all(isinstance(a, np.ndarray) and a.dtype == through.dtype for a in arrays):
        out, total = np.empty_like(through), np.ascontiguousarray(constant).copy()
        kernels.relu_rows_step_into(through, domain, np.ascontiguousarray(lower_slope),
                                    np.ascontiguousarray(slope),
                                    np.ascontiguousarray(intercept), out, total)
        return out, total
    xp = get_array_module(through)
    lower_slope, slope, intercept = lower_slope[domain], slope[domain], intercept[domain]
    total = constant + (xp.minimum(through, 0) * intercept).sum(axis=1)
    return through * xp.where(through > 0, lower_slope, slope), total


def _record(n: int, k: int, neuron: int, side: int, best: Multipliers, row: int,
            value: float) -> tuple:
    alphas = [to_numpy(a[n, row]) for a in best.alpha]
    betas = [to_numpy(b[n, row]) for b in best.beta]
    return (int(n), k, neuron, side, alphas, betas, value)
