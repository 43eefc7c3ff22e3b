"""Helpers shared by ``nobound train``, ``evaluate`` and ``demo``.

All checks here run *before* anything is written, so a bad flag leaves no half-made
output directory behind: every problem is a :class:`~nobound.cli.UsageError` (one line,
exit status 2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nobound.cli import UsageError


def add_checkpoint_arguments(parser: Any, model_help: str = "checkpoint (.h5)") -> None:
    """The flags every command that reads a checkpoint and a dataset split shares."""
    parser.add_argument("--model", required=True, help=model_help)
    parser.add_argument("--dataset", help="dataset (default: the one it was trained on)")
    parser.add_argument("--split", default="test", help="split (default %(default)s)")
    parser.add_argument("--data-dir", help="data root (default: $NOBOUND_DATA, then the "
                                           "download cache)")


def check_device(device: str) -> None:
    """Fail early (before loading data) when the device cannot be used."""
    from nobound.backend import array_module_for

    try:
        array_module_for(device)
    except (RuntimeError, ValueError) as error:
        raise UsageError(str(error)) from None


def check_non_negative(name: str, value: float | int | None) -> None:
    if value is not None and not value >= 0:  # also refuses nan
        raise UsageError(f"{name} must be non-negative, got {value}")


def check_finite(name: str, value: float | int | None) -> None:
    if value is not None and not np.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value}")


def check_positive(name: str, value: float | int | None) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"{name} must be positive, got {value}")


def check_data_dir(data_dir: str | None) -> None:
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"data directory {data_dir} does not exist")


def check_output_directory(out: Path) -> None:
    """Refuse an --out that exists as something other than a directory (e.g. a file)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")


def load_split(name: str, split: str, data_dir: str | None, limit: int | None = None) -> Any:
    """``load_dataset`` with its errors turned into one-line usage errors."""
    from nobound.data import load_dataset

    check_data_dir(data_dir)
    try:
        return load_dataset(name, split, data_dir=data_dir, limit=limit)
    except ValueError as error:  # DataError and unknown names are ValueErrors
        raise UsageError(str(error).splitlines()[0]) from None


def check_model_fits_data(model: Any, architecture: dict[str, Any], data: Any,
                          model_path: str) -> None:
    """Refuse a network whose input shape or number of outputs does not match the dataset
    (before anything is written): one forward pass of a zero input, in eval mode."""
    from nobound.autodiff.tensor import Tensor, no_grad
    from nobound.backend import device_of, get_array_module, to_device

    expected = architecture.get("input_shape")
    if expected is not None and tuple(expected) != tuple(data.input_shape):
        raise UsageError(f"wrong input shape: {model_path} expects inputs of shape "
                         f"{tuple(expected)} but {data.name} has {tuple(data.input_shape)}")
    parameters = list(model.parameters())
    dtype = parameters[0].dtype if parameters else np.float32
    device = device_of(get_array_module(parameters[0].data)) if parameters else "cpu"
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            output = model(Tensor(to_device(np.zeros((1, *data.input_shape), dtype), device)))
    except (ValueError, TypeError, IndexError) as error:
        raise UsageError(f"{model_path} cannot take {data.name} inputs of shape "
                         f"{tuple(data.input_shape)}: {str(error).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    outputs = int(output.shape[-1])
    if output.ndim != 2 or outputs != data.num_classes:
        raise UsageError(f"{model_path} has {outputs} outputs but {data.name} has "
                         f"{data.num_classes} classes")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    def cell(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_json(path: Path, data: Any) -> None:
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")
