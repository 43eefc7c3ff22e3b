"""Patches mode: back-substitute the rows of convolutional neurons on their receptive fields.

A DeepPoly row that bounds the neuron (c, i, j) of a node z_k reached from the input only
through convolutions, per-channel affine maps and ReLUs has non-zero coefficients on an
earlier node z_m only inside a window of size K_m × K_m whose top-left corner is

    (i, j) · S_m − Pad_m,

where, for z_m = conv(z_{m−1}; kernel k, stride s, padding p),

    K_{m−1} = (K_m − 1) s + k,     S_{m−1} = S_m s,     Pad_{m−1} = Pad_m s + p,

starting from K_k = 1, S_k = 1, Pad_k = 0 (ReLUs and per-channel maps keep the window).
The coefficients are carried as windows (P', S, B', R, C_m, K_m, K_m) plus the rows'
(i, j), and every step of eq. (4) acts on the windows:

* conv:  A ↦ the transposed convolution of the window with padding 0 ("full"), a window
  of size K_{m−1}; the bias term is Σ_{o,a,b} M[a,b] A[o,a,b] b[o], where the mask M is 1
  on window positions that are neurons of z_m (0 on positions that fall into the zero
  padding of the next convolution, which the dense path never creates);
* ReLU:  eq. (5) with λ, s, t gathered at each row's window from the zero-padded maps —
  padded positions get λ = s = t = 0, so they drop out;
* per-channel affine (Normalize, BatchNorm):  A ↦ A ⊙ scale, bias Σ M A shift;
* input:  eq. (2) with the centre and radius cropped from the zero-padded input box.

Every coefficient equals the dense path's coefficient of the same neuron (positions
outside the window are zero in the dense path), so the bounds agree up to round-off. A
row costs Σ_m C_m K_m² instead of Σ_m C_m H_m W_m (cnn3's second conv layer on MNIST:
8·4² and 11² instead of 8·14² and 28²).

:func:`window_rows` hands the rows out sorted by position (:func:`by_position`; the bounds
come back in the given order): rows that share a window then lie together, which the
compiled loops on rows stored rows-innermost (:mod:`nobound.bounds.kernels`) use.

The plan's ``patches`` switches the path (:mod:`nobound.bounds.plan`): ``"auto"`` uses
windows where they are smaller than the dense maps, ``"always"`` wherever they apply,
``"never"`` keeps the dense path. :class:`WindowRows` is the layout the back-substitution
of :mod:`nobound.bounds.deeppoly` moves through the layers, as it moves dense rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from math import prod
from typing import TYPE_CHECKING, Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import get_array_module
from nobound.bounds.network import ChannelAffineStep, ConvStep, Network, ReluStep, Step
from nobound.bounds.plan import BoundsPlan
from nobound.bounds.regions import Box
from nobound.bounds.rows import ReluLines, RowSet
from nobound.bounds.steps import transposed_conv

if TYPE_CHECKING:
    from nobound.bounds.deeppoly import ReluRelaxation


@dataclass(frozen=True)
class Window:
    """Where a row's coefficients live on one node: ``height`` × ``width`` positions whose
    top-left corner, for the row's neuron at (i, j), is (i·stride − padding, j·stride −
    padding)."""

    height: int
    width: int
    stride: int
    padding: int

    def through_conv(self, step: ConvStep) -> Window:
        """The window on the conv's input: K' = (K − 1) s + k, S' = S s, Pad' = Pad s + p."""
        kernel_h, kernel_w = step.weight.shape[-2:]
        return Window((self.height - 1) * step.stride + kernel_h,
                      (self.width - 1) * step.stride + kernel_w,
                      self.stride * step.stride, self.padding * step.stride + step.padding)


@dataclass
class NeuronRows:
    """Rows that are (weighted) unit vectors on neurons (c, i, j) of a (C, H, W) node.

    ``channel``, ``row``, ``column`` are integer arrays and ``weight`` (1, or 0 for a
    padding row) a float array, all of shape (P'_r, B'_r, R).
    """

    channel: Any
    row: Any
    column: Any
    weight: Any

    @property
    def count(self) -> int:
        return self.channel.shape[-1]

    def chunk(self, start: int, stop: int) -> NeuronRows:
        return NeuronRows(*(a[..., start:stop] for a in
                            (self.channel, self.row, self.column, self.weight)))


def all_neurons(shape: tuple[int, int, int], like: Tensor) -> NeuronRows:
    """One row per neuron of a (C, H, W) node, in row-major order (shared by the batch)."""
    xp = like.xp
    channel, row, column = xp.unravel_index(xp.arange(prod(shape)), shape)
    weight = xp.ones(prod(shape), dtype=like.dtype)
    return NeuronRows(*(a.reshape(1, 1, -1) for a in (channel, row, column, weight)))


def chosen_neurons(flat_index: Any, keep: Any, shape: tuple[int, int, int],
                   like: Tensor) -> NeuronRows:
    """Rows on the neurons ``flat_index`` (P', B, R) of a (C, H, W) node; ``keep`` False
    marks padding rows (zero coefficients)."""
    channel, row, column = like.xp.unravel_index(flat_index, shape)
    return NeuronRows(channel, row, column, keep.astype(like.dtype))


def by_position(neurons: NeuronRows) -> tuple[NeuronRows, Any]:
    """The rows sorted by position (i, j), in their order within a position, and the
    inverse permutation (P'_r, B'_r, R): rows that share a window lie together, so the
    rows-innermost window loops (``_rows_innermost_numba``) read each window's λ, s, t
    once for a run of them."""
    xp = get_array_module(neurons.row)
    key = neurons.row * (int(neurons.column.max()) + 1) + neurons.column
    order = xp.argsort(key, axis=-1, kind="stable")
    inverse = xp.argsort(order, axis=-1)
    return NeuronRows(*(xp.take_along_axis(a, order, axis=-1) for a in
                        (neurons.channel, neurons.row, neurons.column, neurons.weight))), inverse


def applies(network: Network, end: int, relaxations: Mapping[int, ReluRelaxation],
            plan: BoundsPlan) -> bool:
    """Whether node ``end`` is bounded in patches mode (see the plan's ``patches``).

    Needs (C, H, W) nodes reached only through Conv2d, per-channel affine maps and ReLUs,
    and relaxations shared by all rows (alpha-CROWN's per-row slopes stay dense).
    """
    if plan.patches == "never" or end < 0 or len(network.input_shape) != 3:
        return False
    steps = network.steps[:end + 1]
    if not all(isinstance(step, ConvStep | ChannelAffineStep | ReluStep)
               and len(step.input_shape) == 3 for step in steps):
        return False
    if any(relaxation.row_lower_slopes is not None for relaxation in relaxations.values()):
        return False
    if plan.patches == "always":
        return True
    windows = node_windows(network, end)
    window_size = sum(shape[0] * w.height * w.width for shape, w in
                      zip(_node_shapes(network, end), windows, strict=True))
    dense_size = sum(prod(shape) for shape in _node_shapes(network, end))
    return window_size < dense_size


def _node_shapes(network: Network, end: int) -> list[tuple[int, ...]]:
    """Feature shapes of nodes −1 (the input), 0, …, end."""
    return [network.input_shape] + [step.output_shape for step in network.steps[:end + 1]]


def node_windows(network: Network, end: int) -> list[Window]:
    """The windows of rows of node ``end`` on nodes −1, 0, …, end (list index m + 1)."""
    windows = [Window(1, 1, 1, 0)]
    for step in reversed(network.steps[:end + 1]):
        windows.append(windows[-1].through_conv(step) if isinstance(step, ConvStep)
                       else windows[-1])
    return windows[::-1]


def _valid_mask(neurons: NeuronRows, window: Window, height: int, width: int) -> Any:
    """1 where a window position is a neuron of an (H, W) node: (P'_r, 1, B'_r, R, 1, K, K),
    or None when every position of every row is one."""
    xp = get_array_module(neurons.row)
    top = neurons.row * window.stride - window.padding
    left = neurons.column * window.stride - window.padding
    rows = top[..., None] + xp.arange(window.height)
    columns = left[..., None] + xp.arange(window.width)
    inside_rows = (rows >= 0) & (rows < height)
    inside_columns = (columns >= 0) & (columns < width)
    mask = inside_rows[..., :, None] & inside_columns[..., None, :]
    if bool(mask.all()):
        return None
    shape = mask.shape
    return mask.reshape(shape[0], 1, shape[1], shape[2], 1, *shape[3:]).astype(
        neurons.weight.dtype)


def gather_windows(maps: Sequence[Tensor], neurons: NeuronRows, window: Window
                   ) -> list[Tensor]:
    """Each row's window of per-neuron maps, zero outside the image: for maps of one shape
    (P_x, B, C, H, W), Tensors (P, 1, B, R, C, K_h, K_w) (differentiable: a gather from the
    zero-padded maps, with one index shared by all maps)."""
    xp = maps[0].xp
    if len({values.shape for values in maps}) != 1:
        raise ValueError(f"maps of different shapes: {[values.shape for values in maps]}")
    members, batch, channels, height, width = maps[0].shape
    bottom = max(0, int(neurons.row.max()) * window.stride - window.padding + window.height
                 - height)
    right = max(0, int(neurons.column.max()) * window.stride - window.padding + window.width
                - width)
    padded_h, padded_w = height + window.padding + bottom, width + window.padding + right
    # the padded map starts `padding` before the image, so a window starts at (i S, j S)
    rows = (neurons.row * window.stride)[..., None] + xp.arange(window.height)
    columns = (neurons.column * window.stride)[..., None] + xp.arange(window.width)
    spatial = rows[..., None, :, None] * padded_w + columns[..., None, None, :]
    image = padded_h * padded_w
    member = (xp.arange(members) * (batch * channels * image)).reshape(-1, 1, 1, 1, 1, 1)
    sample = (xp.arange(batch) * (channels * image)).reshape(1, -1, 1, 1, 1, 1)
    channel = (xp.arange(channels) * image).reshape(1, 1, 1, -1, 1, 1)
    index = member + sample + channel + spatial  # (P, B, R, C, K_h, K_w)
    shape = index.shape[:1] + (1,) + index.shape[1:]
    index = index.reshape(-1)
    widths = [(0, 0), (0, 0), (0, 0), (window.padding, bottom), (window.padding, right)]
    return [ops.getitem(ops.pad(values, widths).reshape((-1,)), index).reshape(shape)
            for values in maps]


def _unit_windows(neurons: NeuronRows, channels: int) -> Tensor:
    """The rows themselves on z_end: one-hot over channels on a 1 × 1 window,
    (P'_r, 1, B'_r, R, C, 1, 1)."""
    xp = get_array_module(neurons.weight)
    one_hot = (xp.arange(channels) == neurons.channel[..., None]) * neurons.weight[..., None]
    lead = one_hot.shape
    return Tensor(one_hot.reshape(lead[0], 1, lead[1], lead[2], channels, 1, 1))


def _conv_back_step(step: ConvStep, coefficients: Tensor, window: Window
                    ) -> tuple[Tensor, Tensor | None]:
    """(A W, A b) on a window: the "full" transposed convolution (padding 0) and the bias
    term, from one compiled pass where the rows go rows-innermost."""
    # imported here: the kernels module builds on the layouts
    from nobound.bounds.kernels import fused_conv_back_step

    kernel_h, kernel_w = step.weight.shape[-2:]
    size = ((window.height - 1) * step.stride + kernel_h,
            (window.width - 1) * step.stride + kernel_w)
    in_shape = (step.weight.shape[-3], *size)
    if (fused := fused_conv_back_step(coefficients, step.weight, step.bias, in_shape,
                                      step.stride, 0)) is not None:
        return fused
    out_shape = (step.weight.shape[-4], window.height, window.width)
    return transposed_conv(coefficients, step.weight, out_shape, in_shape, step.stride, 0), \
        step.bias_term(coefficients)


@dataclass(frozen=True)
class WindowRows:
    """Coefficients A (P', S, B', R, C_m, K_m, K_m) of the rows ``neurons`` on their windows
    of the node they have reached; ``windows`` holds the windows on nodes −1 … end.

    ``masked``: A is zero on window positions that are not neurons of the node (a "full"
    transposed convolution spreads onto the next conv's zero padding; the mask removes
    that before a bias is collected or the window shrinks into an image border).
    """

    A: Tensor  # noqa: N815
    neurons: NeuronRows
    windows: tuple[Window, ...]
    masked: bool = True

    ndim = 3
    per_row = True  # every row sees its own window of the input box

    def through(self, step: Step) -> tuple[WindowRows, Tensor | None]:
        """(A W, A b) on windows: the "full" transposed convolution for a conv, the step's
        own rescaling for a per-channel affine map."""
        window = self.windows[step.index + 1]
        A = self.A  # noqa: N806
        if not self.masked:
            mask = _valid_mask(self.neurons, window, *step.output_shape[1:])
            if mask is not None:
                # imported here: the kernels module builds on the layouts
                from nobound.bounds.kernels import rows_innermost_product

                kept = rows_innermost_product(A, mask)
                A = A * mask if kept is None else kept  # noqa: N806
        if isinstance(step, ConvStep):
            A, term = _conv_back_step(step, A, window)  # noqa: N806
            return replace(self, A=A, masked=False), term
        return replace(self, A=step.backward(A), masked=True), step.bias_term(A)

    def relu_lines(self, relaxation: ReluRelaxation, index: int) -> WindowReluLines:
        """λ, s, t at each row's window (0 on padded positions, so they drop out)."""
        return WindowReluLines(relaxation, self.neurons, self.windows[index + 1])

    def replaced(self, A: Tensor) -> WindowRows:  # noqa: N803
        return replace(self, A=A, masked=True)  # the ReLU gave padded positions slope 0

    def input_box(self, box: Box) -> tuple[Tensor, Tensor]:
        """Centre and radius of each row's window of the zero-padded input box."""
        center, radius = box.center, box.radius
        if center.ndim == 4:  # (B, C, H, W): no population axis
            center, radius = center.reshape((1, *center.shape)), radius.reshape((1, *radius.shape))
        center, radius = gather_windows((center, radius), self.neurons, self.windows[0])
        return center, radius


class WindowReluLines:
    """:class:`ReluLines` of eq. (5) at each row's window, gathered on first use; the
    compiled step (:mod:`nobound.bounds.kernels`) reads ``relaxation``'s maps directly."""

    lower_intercept = None

    def __init__(self, relaxation: ReluRelaxation, neurons: NeuronRows, window: Window) -> None:
        self.relaxation, self.neurons, self.window = relaxation, neurons, window
        self._lines: ReluLines | None = None

    def gathered(self) -> ReluLines:
        if self._lines is None:
            relaxation = self.relaxation
            lam, slope, intercept = gather_windows(
                (relaxation.lower_slope, relaxation.upper_slope, relaxation.upper_intercept),
                self.neurons, self.window)
            self._lines = ReluLines({"lower": lam, "upper": lam}, slope, intercept)
        return self._lines

    @property
    def lower_slope(self) -> dict[str, Tensor]:
        return self.gathered().lower_slope

    @property
    def upper_slope(self) -> Tensor:
        return self.gathered().upper_slope

    @property
    def intercept(self) -> Tensor:
        return self.gathered().intercept


def window_rows(network: Network, end: int, box: Box, plan: BoundsPlan, neurons: NeuronRows,
                place: Callable[[dict[str, Tensor]], Any]) -> RowSet:
    """The rows ``neurons`` of node ``end`` as window layouts, in chunks that fit the plan:
    a window row holds C_m K_m² coefficients per node and its gathered λ, s, t (factor 2)."""
    windows = tuple(node_windows(network, end))
    sizes = [shape[0] * w.height * w.width for shape, w in
             zip(_node_shapes(network, end), windows, strict=True)]
    chunk = plan.rows_per_chunk(sizes, 2, box.lower.data.itemsize, network.population or 1,
                                2, box.batch_size)
    channels = network.steps[end].output_shape[0]
    neurons, inverse = by_position(neurons)

    def make(start: int, stop: int) -> WindowRows:
        part = neurons.chunk(start, stop)
        return WindowRows(_unit_windows(part, channels), part, windows)

    def place_in_order(bounds: dict[str, Tensor]) -> Any:
        return place({side: ops.gather(values, inverse, axis=-1)
                      for side, values in bounds.items()})

    return RowSet(neurons.count, chunk, make, place_in_order)


__all__ = ["NeuronRows", "Window", "WindowReluLines", "WindowRows", "all_neurons", "applies",
           "by_position", "chosen_neurons", "gather_windows", "node_windows", "window_rows"]
