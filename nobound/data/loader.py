"""Mini-batches with deterministic, resumable shuffling and augmentation.

The order of epoch ``e`` is the permutation drawn from
``random_stream(seed, e, name="shuffle")`` and the augmentation of batch ``b`` in epoch
``e`` uses ``random_stream(seed, e, b, name="augment")``. Nothing depends on what was
iterated before, so ``loader.epoch(e, start=b)`` yields exactly the batches ``b, b+1, ...``
that an uninterrupted run would have seen: training can stop anywhere and resume
bit-for-bit from ``(epoch, batch)``.

Pixels stay uint8 until the last moment: a batch is gathered on the host, optionally moved
to the device (``device="cuda"`` transfers 4x fewer bytes than float32), augmented there
and only then converted to floats in ``[0, 1]``. With ``resident=True`` the whole split is
copied to the device once and batches are gathered there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backend import default_dtype, random_stream, to_device
from .augment import Augmentation, get_augmentation
from .dataset import Dataset, to_unit_float


class BatchLoader:
    """Iterate over ``(images, labels)`` batches of a :class:`Dataset`.

    Parameters
    ----------
    dataset:
        A :class:`Dataset`, or a ``(pixels, labels)`` pair of ``(N, C, H, W)`` and ``(N,)``
        arrays (pixels uint8 or floats in ``[0, 1]``).
    batch_size:
        Examples per batch.
    shuffle:
        Shuffle per epoch (deterministically from ``seed`` and the epoch); otherwise the
        stored order is used.
    seed:
        Seed of the shuffle and augmentation streams.
    drop_last:
        Drop the final incomplete batch (then ``len()`` is ``N // batch_size``).
    augmentation:
        ``None`` (no augmentation), an :class:`Augmentation`, a registered name, or
        ``"default"`` for the dataset's default (see :mod:`nobound.data.augment`).
    device:
        ``None`` keeps batches where the data lives; ``"cpu"`` or ``"cuda"`` moves them.
    dtype:
        Float dtype of the images (default :func:`nobound.backend.default_dtype`).
    resident:
        Copy the whole split to ``device`` once instead of transferring each batch.
    """

    def __init__(self, dataset: Dataset | tuple[Any, Any], batch_size: int, *,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 augmentation: Augmentation | str | None = None, device: str | None = None,
                 dtype: Any = None, resident: bool = False) -> None:
        if isinstance(dataset, Dataset):
            pixels, labels = dataset.pixels, dataset.labels
        else:
            pixels, labels = dataset
        if len(pixels) != len(labels):
            raise ValueError(f"{len(pixels)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if isinstance(augmentation, str):
            if augmentation == "default":
                if not isinstance(dataset, Dataset):
                    raise ValueError("augmentation='default' needs a Dataset")
                augmentation = dataset.spec.default_augmentation
            augmentation = get_augmentation(augmentation)
        if augmentation is not None and augmentation.is_identity:
            augmentation = None
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.augmentation = augmentation
        self.device = device
        self.dtype = np.dtype(dtype or default_dtype())
        self.resident = resident and device is not None
        if self.resident:
            pixels, labels = to_device(pixels, device), to_device(labels, device)
        self._pixels, self._labels = pixels, labels
        self.current_epoch = 0

    @property
    def num_examples(self) -> int:
        return int(len(self._labels))

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that ``iter(loader)`` runs."""
        self.current_epoch = int(epoch)

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the examples in ``epoch`` (host int64 array)."""
        if not self.shuffle:
            return np.arange(self.num_examples)
        return random_stream(self.seed, epoch, name="shuffle").permutation(self.num_examples)

    def batch_indices(self, epoch: int, index: int, order: np.ndarray | None = None
                      ) -> np.ndarray:
        """Dataset indices of batch ``index`` of ``epoch``."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        order = self.permutation(epoch) if order is None else order
        return order[index * self.batch_size:(index + 1) * self.batch_size]

    def get_batch(self, epoch: int, index: int, order: np.ndarray | None = None
                  ) -> tuple[Any, Any]:
        """Batch ``index`` of ``epoch`` as ``(images, labels)`` (float images in [0, 1],
        int64 labels), identical however it is reached."""
        idx = self.batch_indices(epoch, index, order)
        if self.resident:
            idx = to_device(idx, self.device)
        x, y = self._pixels[idx], self._labels[idx]
        if self.device is not None and not self.resident:
            x, y = to_device(x, self.device), to_device(y, self.device)
        if self.augmentation is not None:
            x = self.augmentation(x, random_stream(self.seed, epoch, index, name="augment"))
        return to_unit_float(x, self.dtype), y.astype(np.int64, copy=False)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Any, Any]]:
        """Yield the batches of ``epoch`` from batch ``start`` on (for resuming)."""
        if not 0 <= start <= len(self):
            raise IndexError(f"start batch {start} out of range for {len(self)} batches")
        order = self.permutation(epoch)
        for index in range(start, len(self)):
            yield self.get_batch(epoch, index, order)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self.epoch(self.current_epoch)
