"""``load_dataset``: one entry point for every supported dataset.

>>> from nobound.data import load_dataset
>>> test = load_dataset("fashion-mnist-embedded", "test")   # ships with nobound
>>> test.images.shape, test.images.dtype, test.labels.dtype
((500, 1, 28, 28), dtype('float32'), dtype('int64'))

Names: ``mnist``, ``fashion-mnist``, ``fashion-mnist-embedded``, ``cifar10``,
``tinyimagenet`` (see :mod:`nobound.data.specs` for aliases and metadata). Files are
located as described in :mod:`nobound.data.locate` and verified against the known
checksums unless ``verify=False``.
"""

from __future__ import annotations

from pathlib import Path

from .cifar import read_cifar10_split
from .dataset import Dataset
from .embedded import EMBEDDED_PATH, load_embedded
from .errors import DatasetNotFoundError
from .locate import find_dataset_dir
from .mnist import read_mnist_split
from .specs import SPECS, get_spec
from .tinyimagenet import read_tinyimagenet_split


def available_datasets() -> list[str]:
    """The names accepted by :func:`load_dataset`."""
    return list(SPECS)


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None,
                 download: bool = False, *, verify: bool = True, limit: int | None = None,
                 base_url: str | None = None) -> Dataset:
    """Load one split of a dataset as a :class:`Dataset`.

    Parameters
    ----------
    name:
        Dataset name (``"mnist"``, ``"fashion-mnist"``, ``"fashion-mnist-embedded"``,
        ``"cifar10"``, ``"tinyimagenet"``; aliases such as ``"cifar-10"`` work).
    split:
        ``"train"`` or ``"test"`` (for TinyImageNet ``"test"`` is the labelled ``val``
        split; ``"val"`` is accepted too).
    data_dir:
        Data root (or the dataset's own folder); default ``$NOBOUND_DATA``, then the
        download cache.
    download:
        Download the dataset from its official location if it is not found.
    verify:
        Compare files with the known checksums (and, for TinyImageNet, the canonical
        counts). ``False`` accepts modified or user-made files; formats are still checked.
    limit:
        Keep only the first ``limit`` examples (TinyImageNet then decodes only those).
    base_url:
        Download mirror replacing the official location.
    """
    spec = get_spec(name)
    valid = spec.splits + (("val",) if spec.name == "tinyimagenet" else ())
    if split not in valid:
        raise ValueError(f"unknown split {split!r} for {spec.name}; expected one of {valid}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative, got {limit}")
    class_names = None
    if spec.name == "fashion-mnist-embedded":
        pixels, labels = load_embedded(split, verify=verify)
        source = EMBEDDED_PATH
    else:
        try:
            source = find_dataset_dir(spec.name, data_dir)
        except DatasetNotFoundError:
            if not download:
                raise
            from .download import download_dataset  # lazy: keeps `python -m ...download` clean

            source = download_dataset(spec.name, data_dir, base_url=base_url, verify=verify)
        if spec.name in ("mnist", "fashion-mnist"):
            pixels, labels = read_mnist_split(source, split, family=spec.name, verify=verify)
        elif spec.name == "cifar10":
            pixels, labels = read_cifar10_split(source, split, verify=verify, limit=limit)
        else:
            pixels, labels, wnids = read_tinyimagenet_split(source, split, verify=verify,
                                                            limit=limit)
            class_names = tuple(wnids)
    if limit is not None and limit < len(labels):
        pixels, labels = pixels[:limit].copy(), labels[:limit].copy()
    return Dataset(spec.name, "test" if split == "val" else split, pixels, labels, spec,
                   class_names=class_names, source=str(source))
