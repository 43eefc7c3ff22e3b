"""The data layer: dataset readers, verified downloads, augmentation and batching.

Typical use::

    from nobound.data import BatchLoader, load_dataset

    train = load_dataset("cifar10", "train", download=True)   # floats in [0, 1], NCHW
    loader = BatchLoader(train, 128, seed=0, augmentation="default", device="cuda")
    for epoch in range(10):
        for x, y in loader.epoch(epoch):
            ...

Modules, one idea each: :mod:`~.specs` (dataset metadata), :mod:`~.locate` (where data
lives, ``NOBOUND_DATA``), :mod:`~.idx` / :mod:`~.mnist` / :mod:`~.cifar` /
:mod:`~.tinyimagenet` (strict readers), :mod:`~.checksums`, :mod:`~.download`,
:mod:`~.embedded` (the shipped Fashion-MNIST subset), :mod:`~.dataset`, :mod:`~.load`,
:mod:`~.augment`, :mod:`~.loader`.
"""

from .augment import (
    AUGMENTATIONS,
    Augmentation,
    crop_at,
    default_augmentation,
    flip_where,
    get_augmentation,
    random_crop,
    random_flip,
)
from .dataset import Dataset, to_unit_float
from .errors import DataError, DatasetNotFoundError
from .load import available_datasets, load_dataset
from .loader import BatchLoader
from .locate import ENV_VAR, find_dataset_dir
from .specs import SPECS, DatasetSpec, get_spec


def __getattr__(name: str) -> object:
    # download_dataset is imported lazily so `python -m nobound.data.download` runs cleanly
    if name == "download_dataset":
        from .download import download_dataset

        return download_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUGMENTATIONS", "Augmentation", "BatchLoader", "DataError", "Dataset",
    "DatasetNotFoundError", "DatasetSpec", "ENV_VAR", "SPECS", "available_datasets",
    "crop_at", "default_augmentation", "download_dataset", "find_dataset_dir", "flip_where",
    "get_augmentation", "get_spec", "load_dataset", "random_crop", "random_flip",
    "to_unit_float",
]
