"""Compiled loops (Numba) for beta-CROWN's back-substitution and its Adam steps.

Each loop is one pass over neuron-major arrays (n, N, K) — neuron, sub-domain, row —
doing what :func:`nobound.certify.beta_crown._back_substitute` and
:func:`~nobound.certify.beta_crown.optimise` do in a dozen NumPy passes, with the same
arithmetic per element (no fused multiply-adds, no reassociation: the NumPy path is the
reference the tests compare against) and sums over neurons taken in neuron order, as
NumPy's reduction over the leading axis takes them. Importing this module raises
``ImportError`` without Numba.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

_OPTIONS = {"cache": True, "boundscheck": False, "nogil": True}


@njit(**_OPTIONS)
def lines_into(lower: Any, upper: Any, signs: Any, unstable: Any, slope: Any,
               intercept: Any, sign_values: Any) -> None:
    """The ReLU relaxation of bounds (N, n) written neuron-major (n, N): the unstable mask,
    the upper slope (a stable neuron's: 1 active, 0 inactive) and intercept, the signs."""
    count, n = lower.shape
    zero = slope.dtype.type(0)
    one = slope.dtype.type(1)
    for d in range(count):
        for i in range(n):
            low = lower[d, i]
            high = upper[d, i]
            sign_values[i, d] = signs[d, i]
            if low < zero and high > zero:
                unstable[i, d] = True
                s = high / (high - low)
                slope[i, d] = s
                intercept[i, d] = -s * low
            else:
                unstable[i, d] = False
                slope[i, d] = one if low >= zero else zero
                intercept[i, d] = zero


@njit(**_OPTIONS)
def relu_step_into(through: Any, alpha: Any, beta: Any, unstable: Any, slope: Any,
                   intercept: Any, signs: Any, out: Any, total: Any) -> None:
    """One ReLU of the back-substitution: with the lower slope α where unstable, else the
    stable slope, out = Λ̂⁺ lower slope + Λ̂⁻ s − β sign; total += Σ_neurons Λ̂⁻ t
    (``total`` (N, K)). β is read on split neurons only (β sign is 0 elsewhere)."""
    n, count, rows = through.shape
    zero = through.dtype.type(0)
    for i in range(n):
        for d in range(count):
            free = unstable[i, d]
            s = slope[i, d]
            t = intercept[i, d]
            sign = signs[i, d]
            for k in range(rows):
                value = through[i, d, k]
                if value > zero:
                    step = value * (alpha[i, d, k] if free else s)
                else:
                    step = value * s
                    total[d, k] += value * t
                out[i, d, k] = step - beta[i, d, k] * sign if sign != 0 else step


@njit(**_OPTIONS)
def box_step_into(first: Any, box_lower: Any, box_upper: Any, below: Any, above: Any,
                  grad_through: Any, gradient: bool) -> None:
    """The input layer: below += Σ (Λ₀W₀)⁺ l₀, above += Σ (Λ₀W₀)⁻ u₀ per (N, K), and with
    ``gradient`` grad_through = l₀ where Λ₀W₀ > 0 else u₀. The box is (n₀, N) or (n₀, 1)."""
    n, count, rows = first.shape
    zero = first.dtype.type(0)
    shared = box_lower.shape[1] == 1
    for i in range(n):
        for d in range(count):
            b = 0 if shared else d
            low = box_lower[i, b]
            high = box_upper[i, b]
            for k in range(rows):
                value = first[i, d, k]
                if value > zero:
                    below[d, k] += value * low
                    if gradient:
                        grad_through[i, d, k] = low
                else:
                    above[d, k] += value * high
                    if gradient:
                        grad_through[i, d, k] = high


@njit(**_OPTIONS)
def relu_gradient_into(product: Any, bias: Any, above: Any, alpha: Any, unstable: Any,
                       slope: Any, intercept: Any, signs: Any, grad_alpha: Any,
                       grad_beta: Any, grad_through: Any) -> None:
    """The reverse of :func:`relu_step_into`: with g = product + bias (the gradient of the
    bound w.r.t. the coefficient of z_j), grad α = g Λ̂⁺ where unstable, grad β = −g sign,
    and the gradient passed on is g (lower slope) where Λ̂ > 0, else g s + t."""
    n, count, rows = product.shape
    zero = product.dtype.type(0)
    for i in range(n):
        b = bias[i]
        for d in range(count):
            free = unstable[i, d]
            s = slope[i, d]
            t = intercept[i, d]
            sign = signs[i, d]
            for k in range(rows):
                g = product[i, d, k] + b
                value = above[i, d, k]
                grad_alpha[i, d, k] = g * max(value, zero) if free else zero
                grad_beta[i, d, k] = -g * sign
                if value > zero:
                    grad_through[i, d, k] = g * (alpha[i, d, k] if free else s)
                else:
                    grad_through[i, d, k] = g * s + t


@njit(**_OPTIONS)
def adam_step_into(parameter: Any, gradient: Any, first: Any, second: Any,
                   learning_rate: float, first_correction: float, second_correction: float,
                   split: Any, is_beta: bool) -> None:
    """One Adam step in place, then the projection: α clipped to [0, 1]; β kept ≥ 0 on
    split neurons (``split`` (n, N)) and 0 elsewhere."""
    n, count, rows = parameter.shape
    zero = parameter.dtype.type(0)
    one = parameter.dtype.type(1)
    for i in range(n):
        for d in range(count):
            keep = split[i, d]
            if is_beta and not keep:
                continue  # β, its gradient and moments stay 0 off the splits
            for k in range(rows):
                g = gradient[i, d, k]
                m = first[i, d, k] * 0.9 + 0.1 * g
                v = second[i, d, k] * 0.999 + 0.001 * g * g
                first[i, d, k] = m
                second[i, d, k] = v
                p = parameter[i, d, k] + learning_rate * (m / first_correction) / (
                    math.sqrt(v / second_correction) + 1e-8)
                if is_beta:
                    p = max(p, zero) if keep else zero
                else:
                    p = min(max(p, zero), one)
                parameter[i, d, k] = p


@njit(**_OPTIONS)
def csr_times_into(indptr: Any, indices: Any, data: Any, columns: Any, out: Any) -> None:
    """out = M @ columns for a CSR matrix M (n, m), columns (m, R) → out (n, R), each entry
    summed in the CSR order as SciPy's product sums it. The matrix is streamed from memory
    once per block of columns, so few columns are taken 8, 4, 2 or 1 at a time in
    registers, and 16 or more as a vector accumulated row by row."""
    n = out.shape[0]
    width = columns.shape[1]
    zero = out.dtype.type(0)
    if width >= 16:
        total = np.empty(width, out.dtype)
        for j in range(n):
            total[:] = zero
            for p in range(indptr[j], indptr[j + 1]):
                w = data[p]
                i = indices[p]
                for r in range(width):
                    total[r] += w * columns[i, r]
            for r in range(width):
                out[j, r] = total[r]
        return
    # named scalars, not a small accumulator array: Numba keeps these in registers, an
    # array it does not (the array version was measured slower at every width 1-15)
    r = 0
    while r < width:
        block = 8 if width - r >= 8 else 4 if width - r >= 4 else 2 if width - r >= 2 else 1
        for j in range(n):
            start, stop = indptr[j], indptr[j + 1]
            if block == 8:
                t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = zero
                for p in range(start, stop):
                    w = data[p]
                    i = indices[p]
                    t0 += w * columns[i, r]
                    t1 += w * columns[i, r + 1]
                    t2 += w * columns[i, r + 2]
                    t3 += w * columns[i, r + 3]
                    t4 += w * columns[i, r + 4]
                    t5 += w * columns[i, r + 5]
                    t6 += w * columns[i, r + 6]
                    t7 += w * columns[i, r + 7]
                out[j, r + 4] = t4
                out[j, r + 5] = t5
                out[j, r + 6] = t6
                out[j, r + 7] = t7
            elif block == 4:
                t0 = t1 = t2 = t3 = zero
                for p in range(start, stop):
                    w = data[p]
                    i = indices[p]
                    t0 += w * columns[i, r]
                    t1 += w * columns[i, r + 1]
                    t2 += w * columns[i, r + 2]
                    t3 += w * columns[i, r + 3]
            elif block == 2:
                t0 = t1 = zero
                for p in range(start, stop):
                    w = data[p]
                    i = indices[p]
                    t0 += w * columns[i, r]
                    t1 += w * columns[i, r + 1]
            else:
                t0 = zero
                for p in range(start, stop):
                    t0 += data[p] * columns[indices[p], r]
            out[j, r] = t0
            if block >= 2:
                out[j, r + 1] = t1
            if block >= 4:
                out[j, r + 2] = t2
                out[j, r + 3] = t3
        r += block
