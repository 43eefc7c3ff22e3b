"""The linear program shared by the MILP and the triangle LP: a ReLU network over a box.

Variables, in this order: the input x ∈ [l₀, u₀], then for every hidden layer k its
pre-activations z_k ∈ [l_k, u_k] and post-activations y_k ∈ [max(l_k,0), max(u_k,0)],
and, for the MILP only, one indicator δ_k ∈ {0, 1} per neuron (δ = 1 ⇔ active).

Rows:

* affine layers, exactly:  z_k − W_k y_{k−1} = b_k   (y₀ = x);
* stable neurons, exactly: y = z if l ≥ 0 and y = 0 if u ≤ 0;
* unstable neurons (l < 0 < u), y ≥ 0 and y ≥ z, plus
    - ``exact=True``, the big-M encoding (Tjeng et al., 2019) that makes y = ReLU(z)
      for δ ∈ {0, 1}:  y ≤ z − l(1 − δ),  y ≤ u δ;
    - ``exact=False``, the triangle (Planet) relaxation, the convex hull of ReLU on
      [l, u]:  y ≤ u (z − l) / (u − l).
The objective c·f(x) = (W_Lᵀ c)·y_{L−1} + c·b_L is linear in the variables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_array, csr_array

from nobound.exact.dense import DenseNetwork
from nobound.exact.intervals import Interval


@dataclass
class LinearProgram:
    """min cost·v + constant  s.t.  row_lower ≤ A v ≤ row_upper,  lower ≤ v ≤ upper."""

    cost: np.ndarray
    constant: float
    matrix: csr_array
    row_lower: np.ndarray
    row_upper: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    integrality: np.ndarray
    input_slice: slice


class _Rows:
    """Accumulates constraint rows as COO triplets."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.count = 0

    def add(self, blocks: Sequence[tuple[int, np.ndarray]], lower: np.ndarray,
            upper: np.ndarray) -> None:
        """Rows Σ_blocks M·v[offset : offset + M.shape[1]] ∈ [lower, upper]."""
        num_rows = len(lower)
        for offset, block in blocks:
            rows, cols = np.nonzero(block)
            self.rows.append(rows + self.count)
            self.cols.append(cols + offset)
            self.values.append(block[rows, cols])
        self.lower.append(np.asarray(lower, np.float64))
        self.upper.append(np.asarray(upper, np.float64))
        self.count += num_rows

    def add_diagonal(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], lower: np.ndarray,
                     upper: np.ndarray) -> None:
        """Rows Σ_pairs coefficient_i · v[index_i] ∈ [lower_i, upper_i], one row per i."""
        num_rows = len(lower)
        for indices, coefficients in pairs:
            self.rows.append(np.arange(num_rows) + self.count)
            self.cols.append(np.asarray(indices))
            self.values.append(np.broadcast_to(np.asarray(coefficients, np.float64),
                                               (num_rows,)))
        self.lower.append(np.asarray(lower, np.float64))
        self.upper.append(np.asarray(upper, np.float64))
        self.count += num_rows

    def matrix(self, num_variables: int) -> csr_array:
        if not self.rows:
            return csr_array((0, num_variables))
        return coo_array((np.concatenate(self.values),
                          (np.concatenate(self.rows), np.concatenate(self.cols))),
                         shape=(self.count, num_variables)).tocsr()


def encode(network: DenseNetwork, lower: np.ndarray, upper: np.ndarray,
           objective: np.ndarray, bounds: Sequence[Interval], exact: bool) -> LinearProgram:
    """The program minimising objective·f(x) over the box (see the module docstring).

    ``bounds`` are valid, non-empty pre-activation bounds of the hidden layers (at least
    ``network.num_hidden_layers`` of them; extra entries are ignored).
    """
    objective = np.asarray(objective, np.float64).reshape(-1)
    input_size = network.input_size
    var_lower = [np.asarray(lower, np.float64).reshape(-1)]
    var_upper = [np.asarray(upper, np.float64).reshape(-1)]
    integrality = [np.zeros(input_size)]
    rows = _Rows()
    previous, offset = 0, input_size  # offset of y_{k−1} and of the next free variable
    for k in range(network.num_hidden_layers):
        weight, bias = network.weights[k], network.biases[k]
        low, high = (np.asarray(b, np.float64).reshape(-1) for b in bounds[k])
        n = len(bias)
        # where z_k, y_k and δ_k start in the variable vector
        pre, post = offset, offset + n
        indicator = post + n
        offset = indicator + n if exact else post + n
        rows.add([(pre, np.eye(n)), (previous, -weight)], bias, bias)
        var_lower += [low, np.maximum(low, 0.0)]
        var_upper += [high, np.maximum(high, 0.0)]
        integrality += [np.zeros(n), np.zeros(n)]
        neurons = np.arange(n)
        active = low >= 0
        inactive = (high <= 0) & ~active  # l = u = 0 counts as active: y = z = 0
        unstable = ~(active | inactive)
        # Stable active: y − z = 0. Stable inactive: y ∈ [0, max(u, 0)] = [0, 0] already.
        index = neurons[active]
        rows.add_diagonal([(post + index, 1.0), (pre + index, -1.0)], np.zeros(len(index)),
                          np.zeros(len(index)))
        index = neurons[unstable]
        count = len(index)
        unstable_lower, unstable_upper = low[index], high[index]
        rows.add_diagonal([(post + index, 1.0), (pre + index, -1.0)], np.zeros(count),
                          np.full(count, np.inf))
        if exact:
            # y − z − l δ ≤ −l  ⇔  y ≤ z − l(1 − δ);   y − u δ ≤ 0.
            rows.add_diagonal([(post + index, 1.0), (pre + index, -1.0),
                               (indicator + index, -unstable_lower)],
                              np.full(count, -np.inf), -unstable_lower)
            rows.add_diagonal([(post + index, 1.0), (indicator + index, -unstable_upper)],
                              np.full(count, -np.inf), np.zeros(count))
            var_lower.append(np.where(active, 1.0, 0.0))
            var_upper.append(np.where(inactive, 0.0, 1.0))
            integrality.append(np.ones(n))
        else:
            # y − s z ≤ −s l with s = u / (u − l): the triangle's upper side.
            slope = unstable_upper / (unstable_upper - unstable_lower)
            rows.add_diagonal([(post + index, 1.0), (pre + index, -slope)],
                              np.full(count, -np.inf), -slope * unstable_lower)
        previous = post
    cost = np.zeros(offset)
    last_weight = network.weights[-1]
    last_size = last_weight.shape[1]
    cost[previous:previous + last_size] = last_weight.T @ objective
    constant = float(objective @ network.biases[-1])
    return LinearProgram(cost, constant, rows.matrix(offset),
                         np.concatenate([np.zeros(0), *rows.lower]),
                         np.concatenate([np.zeros(0), *rows.upper]), np.concatenate(var_lower),
                         np.concatenate(var_upper), np.concatenate(integrality),
                         slice(0, input_size))
