"""Checkpoints: one HDF5 file holding everything needed to rebuild and resume a run.

Layout (h5py)::

    /                attrs: format="nobound-checkpoint", format_version, nobound_version,
                            architecture, config, method, counters, metrics  (JSON strings)
    /model/<name>    the state dict under PyTorch names ("0.weight", "1.running_mean")
    /optimizer/...   the optimiser's state dict (arrays; scalars in the group's JSON attr)
    /method/...      the training method's own state (same encoding)

Every array carries the SHA-256 of its dtype, shape and bytes, checked on load, so a
corrupted file is an error, never silently wrong weights. Random numbers in nobound come
from counter-based streams (:func:`nobound.backend.random_stream`), so the RNG state is
fully described by ``counters`` (seed, epoch, step, batch index); it is stored there.

Files are written *atomically*: to a temporary file in the same directory, flushed to
disk, then renamed over the target with ``os.replace``, so a crash mid-write leaves the
previous checkpoint intact. Loading a missing, truncated, corrupted or foreign file raises
:class:`CheckpointError` (a ``ValueError``) whose message starts with the file's path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nobound.backend import to_numpy
from nobound.io.architecture import build_model_from_description
from nobound.nn.sequential import Sequential

FORMAT = "nobound-checkpoint"
FORMAT_VERSION = 1
_METADATA = ("architecture", "config", "method", "counters", "metrics")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, corrupted or not a nobound checkpoint."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model plus everything stored with it."""

    path: Path
    model: Sequential
    architecture: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=dict)       # name, options
    counters: dict[str, Any] = field(default_factory=dict)     # seed, epoch, step, ...
    metrics: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] = field(default_factory=dict)
    method_state: dict[str, Any] = field(default_factory=dict)


def array_digest(array: np.ndarray) -> str:
    """SHA-256 over dtype, shape and C-order bytes."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _is_array(value: Any) -> bool:
    """NumPy/CuPy arrays and NumPy scalars (stored as 0-d arrays); not Python scalars."""
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _write_group(group: h5py.Group, state: Mapping[str, Any]) -> None:
    scalars = {}
    for key, value in state.items():
        if _is_array(value):
            array = to_numpy(value)
            dataset = group.create_dataset(key, data=array)
            dataset.attrs["sha256"] = array_digest(array)
        else:
            scalars[key] = value
    group.attrs["scalars"] = json.dumps(scalars)


def _read_group(group: h5py.Group, path: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(group.attrs.get("scalars", "{}"))

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            array = np.asarray(item[()])
            expected = item.attrs.get("sha256")
            if expected is None or array_digest(array) != expected:
                raise CheckpointError(path, f"corrupted checkpoint: array "
                                            f"{group.name}/{name} fails its SHA-256 check")
            state[name] = array

    group.visititems(visit)
    return state


def save_checkpoint(path: str | Path, model: Sequential, *, architecture: dict[str, Any],
                    config: Mapping[str, Any] | None = None,
                    method: Mapping[str, Any] | None = None,
                    counters: Mapping[str, Any] | None = None,
                    metrics: Mapping[str, Any] | None = None,
                    optimizer_state: Mapping[str, Any] | None = None,
                    method_state: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically to ``path`` and return the path.

    ``architecture`` comes from :func:`nobound.io.architecture.describe_model`; the other
    mappings must be JSON-serialisable (states may hold arrays).
    """
    from nobound import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    metadata = {"architecture": architecture, "config": config or {}, "method": method or {},
                "counters": counters or {}, "metrics": metrics or {}}
    try:
        with h5py.File(temporary, "w") as handle:
            handle.attrs["format"] = FORMAT
            handle.attrs["format_version"] = FORMAT_VERSION
            handle.attrs["nobound_version"] = __version__
            for key, value in metadata.items():
                handle.attrs[key] = json.dumps(dict(value))
            _write_group(handle.create_group("model"), model.state_dict())
            _write_group(handle.create_group("optimizer"), optimizer_state or {})
            _write_group(handle.create_group("method"), method_state or {})
        with open(temporary, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, device: str = "cpu") -> Checkpoint:
    """Read a checkpoint, verify every array and rebuild its model on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise CheckpointError(path, f"not a readable HDF5 file (truncated or corrupted?): "
                                    f"{error}") from None
    try:
        with handle:
            if handle.attrs.get("format") != FORMAT:
                raise CheckpointError(path, "not a nobound checkpoint (no "
                                            f"format={FORMAT!r} attribute)")
            version = int(handle.attrs.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise CheckpointError(path, f"written by a newer nobound (format "
                                            f"{version} > {FORMAT_VERSION})")
            metadata = {key: json.loads(handle.attrs[key]) for key in _METADATA}
            state = _read_group(handle["model"], path)
            optimizer_state = _read_group(handle["optimizer"], path)
            method_state = _read_group(handle["method"], path)
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(path, f"corrupted checkpoint ({type(error).__name__}: "
                                    f"{error})") from None
    try:
        model = build_model_from_description(metadata["architecture"])
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(path, f"model does not match its stored architecture: "
                                    f"{error}") from None
    if device != "cpu":  # optimiser and method states follow their parameters on load
        model.to(device)
    return Checkpoint(path, model, metadata["architecture"], metadata["config"],
                      metadata["method"], metadata["counters"], metadata["metrics"],
                      optimizer_state, method_state)
