"""Where datasets live on disk.

A *data root* is a directory holding one folder per dataset::

    <root>/mnist/                  IDX .gz files
    <root>/fashion-mnist/          IDX .gz files
    <root>/cifar-10-batches-py/    data_batch_1..5, test_batch
    <root>/tiny-imagenet-200/      wnids.txt, train/, val/

The root is the explicit ``data_dir`` argument when one is given (and then only that), else
every directory in the environment variable ``NOBOUND_DATA`` (``os.pathsep``-separated)
followed by the download cache ``$XDG_CACHE_HOME/nobound/data`` (``~/.cache/nobound/data``).
Fashion-MNIST is also looked for where Debian's ``dataset-fashion-mnist`` package puts it.
``data_dir`` may also point straight at a dataset's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetNotFoundError
from .specs import get_spec

ENV_VAR = "NOBOUND_DATA"

#: Extra system-wide locations searched after the data roots.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

#: Files whose presence identifies a dataset folder (any one suffices).
MARKERS: dict[str, tuple[str, ...]] = {
    "mnist": ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
              "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"),
    "cifar10": ("test_batch", "data_batch_1"),
    "tinyimagenet": ("wnids.txt",),
}
MARKERS["fashion-mnist"] = MARKERS["mnist"]


def cache_dir() -> Path:
    """The default download root: ``$XDG_CACHE_HOME/nobound/data``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nobound" / "data"


def data_roots(data_dir: str | Path | None = None) -> list[Path]:
    """The data roots to search, in order (see the module docstring)."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    env = os.environ.get(ENV_VAR, "")
    roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return roots + [cache_dir()]


def download_root(data_dir: str | Path | None = None) -> Path:
    """Where a download goes: ``data_dir``, else the first ``NOBOUND_DATA`` entry, else the
    cache directory."""
    return data_roots(data_dir)[0]


def _is_dataset_dir(path: Path, name: str) -> bool:
    return path.is_dir() and any((path / m).exists() for m in MARKERS[name])


def candidate_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Every directory that :func:`find_dataset_dir` would accept, in search order."""
    spec = get_spec(name)
    if spec.folder is None:
        raise ValueError(f"dataset {spec.name!r} is not stored in a data directory")
    out: list[Path] = []
    for root in data_roots(data_dir):
        out += [root / spec.folder, root]
    if data_dir is None:
        out += list(SYSTEM_DIRS.get(spec.name, ()))
    return out


def find_dataset_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder holding dataset ``name``, or a :class:`DatasetNotFoundError` that lists
    every place looked at and how to fix it."""
    spec = get_spec(name)
    candidates = candidate_dirs(spec.name, data_dir)
    for path in candidates:
        if _is_dataset_dir(path, spec.name):
            return path
    looked = "\n".join(f"  {p}" for p in dict.fromkeys(candidates))
    if data_dir is None:
        env = os.environ.get(ENV_VAR)
        looked += f"\n({ENV_VAR}={env!r})" if env else f"\n({ENV_VAR} is not set)"
    raise DatasetNotFoundError(
        f"dataset {spec.name!r} not found; looked for a folder containing one of "
        f"{', '.join(MARKERS[spec.name])} in:\n{looked}\n"
        f"Fix: put the files in <root>/{spec.folder}/ and pass data_dir=<root> or set "
        f"{ENV_VAR}=<root>, or call load_dataset({spec.name!r}, download=True) "
        f"(or `python -m nobound.data.download {spec.name}`).")
