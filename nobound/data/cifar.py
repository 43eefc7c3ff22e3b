"""CIFAR-10 in the official "python version" layout (``cifar-10-batches-py``).

Each of ``data_batch_1`` … ``data_batch_5`` (train) and ``test_batch`` (test) is a pickled
dict with ``b"data"``, a uint8 ``(N, 3072)`` array of row-major ``3 x 32 x 32`` images, and
``b"labels"``, a list of ``N`` ints in ``[0, 10)``.

Pickle can execute code, so the batches are read with a restricted unpickler that only
resolves the handful of NumPy globals an array needs; anything else is a
:class:`~nobound.data.errors.DataError`. With ``verify=True`` the MD5 of each batch file is
also checked against :data:`~nobound.data.checksums.CIFAR10_BATCH_MD5` *before* unpickling.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .checksums import CIFAR10_BATCH_MD5, digest_file
from .errors import DataError

CIFAR10_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_module, "_reconstruct")] = np.zeros(1).__reduce__()[0]
    _ALLOWED_GLOBALS[(_module, "scalar")] = np.int64(0).__reduce__()[0]
_ALLOWED_GLOBALS[("numpy", "ndarray")] = np.ndarray
_ALLOWED_GLOBALS[("numpy", "dtype")] = np.dtype
_ALLOWED_GLOBALS[("_codecs", "encode")] = codecs.encode
_ALLOWED_GLOBALS[("codecs", "encode")] = codecs.encode


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild NumPy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def read_cifar_batch(path: str | Path, *, md5: str | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled CIFAR batch: uint8 ``(N, 3, 32, 32)`` pixels and int64 labels."""
    path = Path(path)
    if not path.is_file():
        raise DataError("CIFAR batch file not found", path)
    if md5 is not None:
        actual = digest_file(path, "md5")
        if actual != md5:
            raise DataError(f"MD5 is {actual}, expected {md5} (corrupted or not the canonical "
                            f"file; pass verify=False to load a modified file on purpose)",
                            path)
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # truncated or malformed pickles raise many exception types
        raise DataError(f"not a readable CIFAR batch pickle ({type(exc).__name__}: {exc})",
                        path) from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError("CIFAR batch must be a dict with b'data' and b'labels'", path)
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        desc = getattr(data, "shape", type(data).__name__), getattr(data, "dtype", "")
        raise DataError(f"b'data' must be a uint8 (N, 3072) array, got {desc}", path)
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"b'labels' is not a list of integers ({exc})", path) from exc
    if labels.shape != (data.shape[0],):
        raise DataError(f"{data.shape[0]} images but labels of shape {labels.shape}", path)
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        raise DataError(f"labels out of range [0, 10): min {labels.min()}, "
                        f"max {labels.max()}", path)
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10_split(directory: str | Path, split: str, *, verify: bool = True,
                       limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read the train (five batches) or test split of CIFAR-10.

    With ``limit`` only as many batch files as needed are opened.
    """
    if split not in CIFAR10_BATCHES:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(CIFAR10_BATCHES)}")
    pixels, labels, count = [], [], 0
    for name in CIFAR10_BATCHES[split]:
        if limit is not None and count >= limit:
            break
        x, y = read_cifar_batch(Path(directory) / name,
                                md5=CIFAR10_BATCH_MD5[name] if verify else None)
        pixels.append(x)
        labels.append(y)
        count += len(y)
    return np.concatenate(pixels), np.concatenate(labels)
