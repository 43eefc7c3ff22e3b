"""MNIST and Fashion-MNIST: the four IDX files of the official distribution.

Both datasets share one layout: ``train-images-idx3-ubyte.gz`` (``N x 28 x 28`` uint8),
``train-labels-idx1-ubyte.gz`` (``N`` uint8) and the ``t10k-*`` pair for the test split.
Uncompressed copies (the same names without ``.gz``) are accepted too.

With ``verify=True`` (the default) each file's uncompressed payload must have the SHA-256
listed in :data:`nobound.data.checksums.IDX_SHA256`, so only the canonical files load.
With ``verify=False`` any well-formed IDX pair is accepted (user-made or modified files),
but the headers are still parsed strictly and the pair must be consistent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .checksums import IDX_SHA256
from .errors import DataError
from .idx import read_idx

#: ``split -> (images file, labels file)``.
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def idx_file(directory: str | Path, name: str) -> Path:
    """``directory/name`` if present, else its uncompressed twin, else ``directory/name``."""
    path = Path(directory) / name
    if not path.exists() and path.suffix == ".gz" and path.with_suffix("").exists():
        return path.with_suffix("")
    return path


def read_mnist_split(directory: str | Path, split: str, *, family: str = "mnist",
                     verify: bool = True, num_classes: int = 10
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of an MNIST-family dataset.

    Returns ``(pixels, labels)``: uint8 ``(N, 1, H, W)`` and int64 ``(N,)``.
    ``family`` ("mnist" or "fashion-mnist") selects the checksum table.
    """
    if split not in IDX_FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(IDX_FILES)}")
    if verify and family not in IDX_SHA256:
        raise ValueError(f"no known checksums for {family!r}; pass verify=False")
    digests = IDX_SHA256.get(family, {})
    image_name, label_name = IDX_FILES[split]
    image_path = idx_file(directory, image_name)
    label_path = idx_file(directory, label_name)
    images = read_idx(image_path, sha256=digests.get(image_name) if verify else None,
                      ndim=3, dtype=np.uint8)
    labels = read_idx(label_path, sha256=digests.get(label_name) if verify else None,
                      ndim=1, dtype=np.uint8)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images.shape[0]} images in {image_path} but {labels.shape[0]} "
                        f"labels", label_path)
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(f"label {int(labels.max())} out of range for {num_classes} classes",
                        label_path)
    return images[:, None, :, :], labels.astype(np.int64)
