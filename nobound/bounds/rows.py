"""Back-substitution rows: which rows a bound needs, how their coefficients are laid out,
and how many go through the network at once.

DeepPoly (:mod:`nobound.bounds.deeppoly`) asks for the bounds of some rows c of a node —
unit vectors e_i for its neurons, or the rows of a specification C — and back-substitutes
each (eq. 4). This module supplies those rows as a :class:`RowSet`: an iterator over chunks
of rows that fit the plan's memory budget (:mod:`nobound.bounds.plan`), each chunk in a
*layout* that knows how to move its coefficients A through a layer:

* :class:`DenseRows`: A (P', S, B', R, *node shape) over whole nodes; A·W is the step's own
  ``backward`` (a matrix product, a transposed convolution, a rescaling, a reshape);
* :class:`nobound.bounds.patches.WindowRows`: A on each row's receptive-field window of a
  convolutional node, far smaller than the whole maps; the same numbers.

Axes: P' population (1 or P), S bound side (1 while lower and upper coincide, before the
first ReLU; then 2: lower, upper), B' batch (1 while the rows do not depend on the sample),
R rows.

Rows of a node are only needed for neurons whose stability is unknown: for a stable neuron
(l ≥ 0 or u ≤ 0) the relaxation of eq. (5) is exact whatever l and u are. So given a sound
``prior`` (an interval pre-check), sample b's rows are the unit vectors of its unstable
neurons, padded with zero rows to the largest count R in the batch; one batched pass of
R ≤ N rows serves all, and :meth:`RowSet.place` puts the bounds back beside the prior's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.plan import BoundsPlan
from nobound.bounds.regions import Box
from nobound.bounds.steps import Step

if TYPE_CHECKING:
    from nobound.bounds.deeppoly import ReluRelaxation
    from nobound.bounds.network import Network


def contract(A: Tensor, vector: Tensor, ndim: int, per_row: bool = False) -> Tensor:  # noqa: N803
    """Σ_n A[..., r, n] v[..., n] over the last ``ndim`` axes, for A (P', S, B', R, *n) and
    v (P', 1, B, 1 or R, *n): one matrix product when v is shared by the rows (not
    ``per_row``, as on windows, where every row has its own)."""
    if per_row or vector.shape[3] != 1:
        return (A * vector).sum(axis=tuple(range(-ndim, 0)))
    matrix = A.reshape(A.shape[:A.ndim - ndim] + (-1,))
    column = vector.reshape(vector.shape[:3] + (-1, 1))
    product = ops.matmul(matrix, column)
    return product.reshape(product.shape[:-1])


def per_neuron(tensor: Tensor) -> Tensor:
    """(P', B, *n) → (P', 1, B, 1, *n): one value per neuron, broadcast over sides and rows."""
    return tensor.reshape((tensor.shape[0], 1, tensor.shape[1], 1) + tensor.shape[2:])


def per_side(line: Tensor | dict[str, Tensor] | None) -> dict[str, Any]:
    """{side: line}: a line of eq. (5) shared by both bound sides, or its own per side."""
    return line if isinstance(line, dict) else {"lower": line, "upper": line}


@dataclass(frozen=True)
class ReluLines:
    """Eq. (5) laid out like the coefficients: λ per side, s, t of shape (P', 1, B, 1 or R,
    *n) — shared by every row, or one per row (windows, alpha-CROWN's per-row slopes)."""

    lower_slope: dict[str, Tensor]  # side → λ
    upper_slope: Tensor | dict[str, Tensor]     # s = u / (u − l); per side: alpha-CROWN
    intercept: Tensor | dict[str, Tensor]       # t = −s l
    lower_intercept: Tensor | dict[str, Tensor] | None = None  # other activations' t_l


@dataclass(frozen=True)
class DenseRows:
    """Coefficients A (P', S, B', R, *shape) over every neuron of a node."""

    A: Tensor  # noqa: N815
    per_row = False  # the input box and eq. (5) are shared by the rows

    @property
    def ndim(self) -> int:
        """Feature axes of the node the coefficients are on."""
        return self.A.ndim - 4

    def through(self, step: Step) -> tuple[DenseRows, Tensor | None]:
        """(A W, A b) for an affine step z = W v + b: the step computes both."""
        A, term = step.back_substitute(self.A)  # noqa: N806
        return DenseRows(A), term

    def relu_lines(self, relaxation: ReluRelaxation, index: int) -> ReluLines:
        if relaxation.row_lines is not None:  # (P', B, R, *n) → (P', 1, B, R, *n)
            per_row = {name: {side: line[name].reshape((line[name].shape[0], 1)
                                                       + line[name].shape[1:])
                              for side, line in relaxation.row_lines.items()}
                       for name in ("lower_slope", "upper_slope", "upper_intercept",
                                    "lower_intercept")}
            return ReluLines(per_row["lower_slope"], per_row["upper_slope"],
                             per_row["upper_intercept"], per_row["lower_intercept"])
        slopes = relaxation.row_lower_slopes or {}
        lam = {side: slopes[side].reshape((slopes[side].shape[0], 1) + slopes[side].shape[1:])
               if side in slopes else per_neuron(relaxation.lower_slope)
               for side in ("lower", "upper")}
        lower_intercept = relaxation.lower_intercept
        return ReluLines(lam, per_neuron(relaxation.upper_slope),
                         per_neuron(relaxation.upper_intercept),
                         None if lower_intercept is None else per_neuron(lower_intercept))

    def replaced(self, A: Tensor) -> DenseRows:  # noqa: N803
        return DenseRows(A)

    def input_box(self, box: Box) -> tuple[Tensor, Tensor]:
        """Centre and radius of the input box, (P', 1, B, 1, *x)."""
        center, radius = box.center, box.radius
        if center.ndim == self.ndim + 1:  # (B, *x): no population axis
            center, radius = center.reshape((1, *center.shape)), radius.reshape((1, *radius.shape))
        return per_neuron(center), per_neuron(radius)


@dataclass
class RowSet:
    """R rows of one node, handed out in chunks of ``chunk`` rows as layouts.

    ``make(start, stop)`` lays out rows start…stop−1; ``place`` turns the concatenated
    bounds {side: (P', B, R)} into the caller's shape (identity by default).
    """

    count: int
    chunk: int
    make: Callable[[int, int], Any]
    place: Callable[[dict[str, Tensor]], Any] = lambda bounds: bounds

    def chunks(self) -> Iterator[tuple[int, int, Any]]:
        for start in range(0, self.count, self.chunk):
            stop = min(start + self.chunk, self.count)
            yield start, stop, self.make(start, stop)


def row_sizes(network: Network, end: int, stop: int = -1) -> list[int]:
    """The coefficients a dense row of node ``end`` holds on each node it is
    back-substituted onto: the inputs of steps stop + 1 … end (node ``stop`` first)."""
    return [prod(step.input_shape) for step in network.steps[stop + 1:end + 1]]


def dense_chunk(network: Network, end: int, box: Box, plan: BoundsPlan, stop: int = -1) -> int:
    """Dense rows of node ``end`` (back to node ``stop``) that fit the budget at once."""
    sizes = row_sizes(network, end, stop)
    sizes.append(prod(network.steps[end].output_shape) if end >= 0 else
                 prod(network.input_shape))
    return plan.rows_per_chunk(sizes, 1, box.lower.data.itemsize, network.population or 1,
                               2, box.batch_size)


def members_per_chunk(network: Network, box: Box, plan: BoundsPlan,
                      exact: Callable[[Network, int], bool]) -> int:
    """Population members to bound together: as many as keep the widest intermediate
    back-substitution (its first 16 rows, the least a chunk should hold) in one budget;
    ``exact(network, end)`` says which ReLU inputs need no back-substitution."""
    population = network.population
    if population is None or population == 1:
        return 1
    single, worst = network.members(0, 1), 0
    for step in network.steps:
        end = step.index - 1
        if step.activation and not exact(network, end):
            rows = dense_chunk(single, end, box, plan)
            wanted = min(prod(network.steps[end].output_shape), 16)
            worst = max(worst, (wanted + rows - 1) // rows)
    return population if worst == 0 else max(1, population // worst)


def identity_rows(shape: tuple[int, ...], start: int, stop: int, like: Tensor) -> DenseRows:
    """Rows start…stop−1 of the identity over a node: unit vectors, (1, 1, 1, R, *shape)."""
    xp = like.xp
    count = stop - start
    rows = xp.zeros((count, prod(shape)), dtype=like.dtype)
    rows[xp.arange(count), xp.arange(start, stop)] = 1
    return DenseRows(Tensor(rows.reshape((1, 1, 1, count, *shape))))


def spec_rows(network: Network, box: Box, spec: Tensor | None, plan: BoundsPlan) -> RowSet:
    """The rows of C (B, K, outputs), or the identity over the outputs without C."""
    end = len(network.steps) - 1
    chunk = dense_chunk(network, end, box, plan)
    if spec is None:
        shape = network.output_shape
        return RowSet(prod(shape), chunk,
                      lambda start, stop: identity_rows(shape, start, stop, box.lower))
    return RowSet(spec.shape[1], chunk, lambda start, stop: DenseRows(
        spec[:, start:stop].reshape((1, 1, *spec[:, start:stop].shape))))


def neuron_rows(network: Network, end: int, box: Box, plan: BoundsPlan,
                relaxations: dict[int, ReluRelaxation],
                prior: tuple[Tensor, Tensor] | None) -> RowSet:
    """Unit rows for the neurons of node ``end`` whose bounds are needed: those ``prior``
    leaves unstable (all without a prior, or when most are); ``place`` returns (lower,
    upper) of shape (P', B, *shape) — DeepPoly's where rows were bounded, else the prior's."""
    from nobound.bounds import patches

    shape = network.steps[end].output_shape
    n, xp, like = prod(shape), box.lower.xp, box.lower
    windows = patches.applies(network, end, relaxations, plan)

    def unflatten(flat: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return tuple(f.reshape(f.shape[:2] + shape) for f in flat)

    def every_neuron(finish: Callable[[tuple[Tensor, Tensor]], Any]) -> RowSet:
        def place(bounds: dict[str, Tensor]) -> Any:
            return finish((bounds["lower"], bounds["upper"]))

        if windows:
            return patches.window_rows(network, end, box, plan, patches.all_neurons(shape, like),
                                       place)
        return RowSet(n, dense_chunk(network, end, box, plan),
                      lambda start, stop: identity_rows(shape, start, stop, like), place)

    if prior is None:
        return every_neuron(unflatten)
    lead = prior[0].shape[:2]
    flat_prior = tuple(p.reshape(*lead, n) for p in prior)
    unstable = ((prior[0].data < 0) & (prior[1].data > 0)).reshape(*lead, n)
    count = int(unstable.sum(axis=-1).max()) if unstable.size else 0

    def beside_prior(flat: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return unflatten(tuple(ops.where(unstable, f, p) for f, p in zip(flat, flat_prior,
                                                                         strict=True)))

    if count == 0:
        return RowSet(0, 1, lambda start, stop: None, lambda bounds: prior)
    if count > plan.dense_fraction * n:
        return every_neuron(beside_prior)
    # per sample: the unstable neurons first (a stable sort keeps their order)
    order = xp.argsort((~unstable).astype(xp.int8), axis=-1, kind="stable")[..., :count]
    valid = xp.take_along_axis(unstable, order, axis=-1)
    slot = xp.where(unstable, xp.cumsum(unstable, axis=-1) - 1, 0)

    def place(bounds: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return beside_prior(tuple(ops.gather(bounds[side], slot, axis=-1)
                                  for side in ("lower", "upper")))

    if windows:
        neurons = patches.chosen_neurons(order, valid, shape, like)
        return patches.window_rows(network, end, box, plan, neurons, place)

    def make(start: int, stop: int) -> DenseRows:
        chosen, keep = order[..., start:stop], valid[..., start:stop]
        one_hot = xp.zeros(chosen.shape + (n,), dtype=like.dtype)
        grid = xp.meshgrid(*(xp.arange(k) for k in chosen.shape), indexing="ij")
        one_hot[(*grid, chosen)] = keep
        return DenseRows(Tensor(one_hot.reshape(lead[0], 1, lead[1], stop - start, *shape)))

    return RowSet(count, dense_chunk(network, end, box, plan), make, place)


__all__ = ["DenseRows", "ReluLines", "RowSet", "contract", "dense_chunk", "identity_rows",
           "neuron_rows", "per_neuron", "per_side", "row_sizes", "spec_rows"]
