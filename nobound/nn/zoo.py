"""The model zoo: the paper's Table 9 networks, CTBench's CNN7 and small FC nets.

Table 9 (App. F.4), 'CONV c h×w/s/p', every layer followed by a ReLU, output layer omitted:

=========  =============  ==============  ===============  ===============
layer      CNN3-tiny      CNN3            CNN5             CNN5-L
=========  =============  ==============  ===============  ===============
1          CONV 2 5×5/2/2 CONV 8 5×5/2/2  CONV 16 5×5/2/2  CONV 64 5×5/2/2
2          CONV 2 4×4/2/1 CONV 8 4×4/2/1  CONV 16 4×4/2/1  CONV 64 4×4/2/1
3                                         CONV 32 4×4/2/1  CONV 128 4×4/2/1
4                                         FC 512           FC 512
=========  =============  ==============  ===============  ===============

CNN7 (CTBench / Shi et al. 2021): CONV 64 3×3/1/1, CONV 64 3×3/1/1, CONV 128 3×3/2/1,
CONV 128 3×3/1/1, CONV 128 3×3/1/1, FC 512, each followed by BatchNorm (optional) and
ReLU, then FC to the classes. Parameter counts (``num_parameters``): cnn3 on MNIST 5,170;
cnn5 on MNIST 165,850; cnn5_l on CIFAR-10 1,255,882.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nobound.nn.activation import Flatten, ReLU
from nobound.nn.layers import Conv2d, Linear
from nobound.nn.module import Module
from nobound.nn.normalization import BatchNorm, Normalize
from nobound.nn.sequential import Sequential

ConvSpec = tuple[int, int, int, int]  # (channels, kernel, stride, padding)

TABLE9: dict[str, tuple[list[ConvSpec], list[int]]] = {
    "cnn3_tiny": ([(2, 5, 2, 2), (2, 4, 2, 1)], []),
    "cnn3": ([(8, 5, 2, 2), (8, 4, 2, 1)], []),
    "cnn5": ([(16, 5, 2, 2), (16, 4, 2, 1), (32, 4, 2, 1)], [512]),
    "cnn5_l": ([(64, 5, 2, 2), (64, 4, 2, 1), (128, 4, 2, 1)], [512]),
    "cnn7": ([(64, 3, 1, 1), (64, 3, 1, 1), (128, 3, 2, 1), (128, 3, 1, 1),
              (128, 3, 1, 1)], [512]),
}


def conv_net(input_shape: Sequence[int], num_classes: int, convs: Sequence[ConvSpec],
             hidden: Sequence[int], batchnorm: bool = False,
             normalize: tuple[Sequence[float], Sequence[float]] | None = None,
             dtype: Any = None) -> Sequential:
    """Conv → [BN] → ReLU blocks, Flatten, FC → [BN] → ReLU blocks, FC to the classes."""
    channels, height, width = input_shape
    layers: list[Module] = []
    if normalize is not None:
        layers.append(Normalize(*normalize, dtype=dtype))
    for out_channels, kernel, stride, padding in convs:
        conv = Conv2d(channels, out_channels, kernel, stride, padding, dtype=dtype)
        layers.append(conv)
        if batchnorm:
            layers.append(BatchNorm(out_channels, spatial=True, dtype=dtype))
        layers.append(ReLU())
        channels, height, width = conv.output_shape((channels, height, width))
    layers.append(Flatten())
    features = channels * height * width
    for width_out in hidden:
        layers.append(Linear(features, width_out, dtype=dtype))
        if batchnorm:
            layers.append(BatchNorm(width_out, spatial=False, dtype=dtype))
        layers.append(ReLU())
        features = width_out
    layers.append(Linear(features, num_classes, dtype=dtype))
    return Sequential(*layers)


def fc_net(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256, 256),
           normalize: tuple[Sequence[float], Sequence[float]] | None = None,
           dtype: Any = None) -> Sequential:
    """Flatten, then Linear → ReLU per hidden width, then Linear to the classes."""
    layers: list[Module] = []
    if normalize is not None:
        layers.append(Normalize(*normalize, dtype=dtype))
    layers.append(Flatten())
    features = 1
    for n in input_shape:
        features *= n
    for width_out in hidden:
        layers += [Linear(features, width_out, dtype=dtype), ReLU()]
        features = width_out
    layers.append(Linear(features, num_classes, dtype=dtype))
    return Sequential(*layers)


def _table9(name: str, batchnorm: bool = False) -> Callable[..., Sequential]:
    convs, hidden = TABLE9[name]

    def build(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
              **kwargs: Any) -> Sequential:
        return conv_net(input_shape, num_classes, convs, hidden, batchnorm=batchnorm, **kwargs)

    build.__doc__ = f"{name} of Table 9{' with BatchNorm' if batchnorm else ''}."
    return build


ARCHITECTURES: dict[str, Callable[..., Sequential]] = {
    "cnn3_tiny": _table9("cnn3_tiny"),
    "cnn3": _table9("cnn3"),
    "cnn5": _table9("cnn5"),
    "cnn5_l": _table9("cnn5_l"),
    "cnn7": _table9("cnn7", batchnorm=True),
    "cnn7_nobn": _table9("cnn7"),
    "fc2x256": lambda input_shape=(1, 28, 28), num_classes=10, **kw: fc_net(
        input_shape, num_classes, (256, 256), **kw),
    "fc3x100": lambda input_shape=(1, 28, 28), num_classes=10, **kw: fc_net(
        input_shape, num_classes, (100, 100, 100), **kw),
}


def build_model(name: str, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                **kwargs: Any) -> Sequential:
    """Build an architecture by name, e.g. ``build_model("cnn3", (1, 28, 28), 10)``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input shape must be (C, H, W), got {tuple(input_shape)}")
    return ARCHITECTURES[name](tuple(input_shape), num_classes, **kwargs)
