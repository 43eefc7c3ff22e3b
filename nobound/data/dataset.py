"""The :class:`Dataset` container returned by :func:`nobound.data.load_dataset`.

A dataset keeps its pixels as they are stored, usually ``uint8`` in ``(N, C, H, W)``
layout, and converts to floating point in ``[0, 1]`` on demand: ``dataset.images`` builds
(and caches) the full float array, while :class:`~nobound.data.loader.BatchLoader`
converts batch by batch, so CIFAR-10 or TinyImageNet never need a float copy of the whole
set (TinyImageNet's train split is 1.2 GB as uint8 but 4.9 GB as float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from ..backend import default_dtype
from .specs import DatasetSpec


def to_unit_float(pixels: Any, dtype: Any = None) -> Any:
    """Pixels as floats in ``[0, 1]``: ``uint8`` is divided by 255, floats are cast.

    Works on NumPy and CuPy arrays alike; ``dtype`` defaults to
    :func:`nobound.backend.default_dtype`.
    """
    dtype = np.dtype(dtype or default_dtype())
    if pixels.dtype == np.uint8:
        return pixels.astype(dtype) / dtype.type(255)
    return pixels.astype(dtype, copy=False)


@dataclass(eq=False)
class Dataset:
    """One split of a dataset: stored pixels, int64 labels and the dataset's metadata.

    ``pixels`` is ``(N, C, H, W)``, either uint8 (0..255) or floating (already in
    ``[0, 1]``). ``images`` is the float view in ``[0, 1]`` with the default dtype.
    """

    name: str
    split: str
    pixels: np.ndarray
    labels: np.ndarray
    spec: DatasetSpec
    class_names: tuple[str, ...] | None = None
    source: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 4:
            raise ValueError(f"pixels must be (N, C, H, W), got shape {self.pixels.shape}")
        if self.labels.shape != (self.pixels.shape[0],):
            raise ValueError(f"{self.pixels.shape[0]} images but labels of shape "
                             f"{self.labels.shape}")
        self.labels = self.labels.astype(np.int64, copy=False)
        if self.class_names is None:
            self.class_names = self.spec.class_names

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")

    @cached_property
    def images(self) -> np.ndarray:
        """All images as floats in ``[0, 1]``, shape ``(N, C, H, W)`` (computed once)."""
        return to_unit_float(self.pixels)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(d) for d in self.pixels.shape[1:])  # type: ignore[return-value]

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalisation mean (metadata; images are not normalised)."""
        return self.spec.mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel normalisation standard deviation."""
        return self.spec.std

    def subset(self, indices: Any) -> Dataset:
        """A new dataset holding the examples at ``indices`` (an index array, slice or
        boolean mask), in that order."""
        if isinstance(indices, slice):
            pixels, labels = self.pixels[indices], self.labels[indices]
        else:
            indices = np.asarray(indices)
            pixels, labels = self.pixels[indices], self.labels[indices]
        return replace(self, pixels=pixels, labels=labels)

    def head(self, n: int) -> Dataset:
        """The first ``n`` examples."""
        return self.subset(slice(0, n))

    def class_counts(self) -> np.ndarray:
        """Number of examples per class, shape ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=self.num_classes)
