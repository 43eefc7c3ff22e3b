"""Static facts about each supported dataset: shape, classes, normalisation, layout.

A :class:`DatasetSpec` carries what a model or a training recipe needs to know about a
dataset without loading it: the input shape ``(C, H, W)``, the number of classes, the
per-channel normalisation constants (mean/std of the training pixels in ``[0, 1]``, as used
by CTBench), the name of its folder under the data root, and the name of its default
augmentation (see :mod:`nobound.data.augment`).

Normalisation is *metadata*: images are always served in ``[0, 1]`` so that perturbation
radii are expressed in pixel space; the model's first layer applies ``(x - mean) / std``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


@dataclass(frozen=True)
class DatasetSpec:
    """Metadata of one dataset (see the module docstring)."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folder: str | None
    default_augmentation: str
    class_names: tuple[str, ...] | None = None
    splits: tuple[str, ...] = ("train", "test")

    def normalization(self, xp: ModuleType = np, dtype: Any = None) -> tuple[Any, Any]:
        """``mean`` and ``std`` as ``(1, C, 1, 1)`` arrays of module ``xp``."""
        shape = (1, len(self.mean), 1, 1)
        mean = xp.asarray(self.mean, dtype=dtype).reshape(shape)
        std = xp.asarray(self.std, dtype=dtype).reshape(shape)
        return mean, std


_MNIST_NORM = ((0.1307,), (0.3081,))
_FASHION_NORM = ((0.2860,), (0.3530,))

SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", 10, (1, 28, 28), *_MNIST_NORM, folder="mnist",
                         default_augmentation="none",
                         class_names=tuple(str(d) for d in range(10))),
    "fashion-mnist": DatasetSpec("fashion-mnist", 10, (1, 28, 28), *_FASHION_NORM,
                                 folder="fashion-mnist", default_augmentation="none",
                                 class_names=FASHION_CLASSES),
    "fashion-mnist-embedded": DatasetSpec("fashion-mnist-embedded", 10, (1, 28, 28),
                                          *_FASHION_NORM, folder=None,
                                          default_augmentation="none",
                                          class_names=FASHION_CLASSES),
    "cifar10": DatasetSpec("cifar10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616), folder="cifar-10-batches-py",
                           default_augmentation="cifar10", class_names=CIFAR10_CLASSES),
    "tinyimagenet": DatasetSpec("tinyimagenet", 200, (3, 64, 64), (0.4802, 0.4481, 0.3975),
                                (0.2302, 0.2265, 0.2262), folder="tiny-imagenet-200",
                                default_augmentation="tinyimagenet"),
}

_ALIASES = {
    "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
    "fashion-mnist-subset": "fashion-mnist-embedded", "embedded": "fashion-mnist-embedded",
    "cifar-10": "cifar10", "cifar_10": "cifar10",
    "tiny-imagenet": "tinyimagenet", "tiny_imagenet": "tinyimagenet", "tin": "tinyimagenet",
    "tiny-imagenet-200": "tinyimagenet",
}


def canonical_name(name: str) -> str:
    """The registry name for ``name`` (case-insensitive, common aliases accepted)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(SPECS)}")
    return key


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of dataset ``name``."""
    return SPECS[canonical_name(name)]
