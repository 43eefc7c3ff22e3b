"""``nobound export``: convert a network between the checkpoint and the ONNX format.

    nobound export runs/cnn3/model.h5 --to cnn3.onnx
    nobound export net.onnx.gz --to net.h5

The source is read by :func:`nobound.io.models.load_network` (an ONNX file is imported and
checked against its graph), the target format follows the suffix (``.onnx``, ``.onnx.gz``,
``.h5``). The target is written only after the whole network was read; an existing target
is refused unless ``--force``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nobound.cli import UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="convert a network: .h5 checkpoint <-> .onnx",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="source network (.h5, .onnx or .onnx.gz)")
    parser.add_argument("--to", required=True, help="target file (.onnx, .onnx.gz or .h5)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing target")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nobound.io.models import load_network, model_kind, save_network

    model_kind(args.to)  # a bad suffix is an error before anything is read
    target = Path(args.to)
    if target.exists() and not args.force:
        raise UsageError(f"--to {target}: exists (use --force to overwrite)")
    if not Path(args.model).is_file():
        raise UsageError(f"{args.model}: no such file")
    dtype = np.float32
    if model_kind(args.model) == "onnx":  # keep the file's precision
        from onnx import helper

        from nobound.io.onnx_graph import graph_input, read_onnx

        elem = graph_input(read_onnx(args.model)).type.tensor_type.elem_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem))
    network = load_network(args.model, dtype=dtype)
    save_network(network, target, name=Path(args.model).name.split(".")[0])
    print(f"wrote {target} ({len(network.model.layers)} layers, input "
          f"{network.input_shape}, {network.num_outputs} outputs)")
    return 0
