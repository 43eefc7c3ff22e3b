"""``nobound bounds``: bound a network's outputs on one input's l∞ ball.

    nobound bounds --model runs/cnn3/model.h5 --method deeppoly --eps 0.1 --index 0
    nobound bounds --model net.onnx --input x.npy --label 3 --eps 0.02 --json
    nobound bounds --model model.h5 --index 0 --layer 3 --save-matrices layer3.npz

With a label (from --dataset/--index or --label) the bounds are on the margins
y_label − y_j (the specification folded into the last layer); the input is certified when
every lower bound is positive. Without a label they are bounds on the logits.
``--layer L`` prints the symbolic bounds A_l x + b_l ≤ z_L ≤ A_u x + b_u (eq. 4) of
layer L's output and ``--save-matrices`` writes them (dense, .npz or .h5); with
``--save-matrices`` alone the output rows' matrices are saved.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from nobound.cli import UsageError
from nobound.cli.common import check_device, check_non_negative, load_split


def register(subparsers: Any) -> None:
    from nobound.bounds import METHODS

    parser = subparsers.add_parser(
        "bounds", help="bound a network's outputs on an l_inf ball (IBP … alpha-CROWN)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint (.h5) or ONNX file")
    parser.add_argument("--method", default="deeppoly",
                        help=f"one of {', '.join(METHODS)} or crown (default %(default)s)")
    parser.add_argument("--eps", type=float, required=True, help="l_inf radius (pixels)")
    parser.add_argument("--index", type=int, default=0, help="example index (default 0)")
    parser.add_argument("--dataset", help="dataset (default: the checkpoint's)")
    parser.add_argument("--split", default="test", help="split (default %(default)s)")
    parser.add_argument("--data-dir", help="data root (default: $NOBOUND_DATA, then cache)")
    parser.add_argument("--input", help=".npy input, shape (C,H,W) or (N,C,H,W) with --index")
    parser.add_argument("--label", type=int, help="true class of --input (margins bounds)")
    parser.add_argument("--alpha-steps", type=int, default=20, help="alpha-CROWN steps")
    parser.add_argument("--alpha-step-size", type=float, default=0.1,
                        help="alpha-CROWN step size")
    parser.add_argument("--layer", type=int, help="print the linear bounds of this layer")
    parser.add_argument("--save-matrices", help="write A_l, b_l, A_u, b_u to .npz or .h5")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.set_defaults(func=run)


def load_network(path: str, device: str) -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, facts) from a checkpoint or an ONNX file (.onnx, .onnx.gz)."""
    from nobound.io.models import load_model_checkpoint

    if not Path(path).is_file():
        raise UsageError(f"--model {path}: no such file")
    checkpoint = load_model_checkpoint(path, device=device)
    facts = {"input_shape": checkpoint.architecture.get("input_shape"),
             "dataset": checkpoint.config.get("run", {}).get("dataset")}
    return checkpoint.model.eval(), facts


def load_example(args: argparse.Namespace, facts: dict[str, Any]) -> tuple[Any, int | None]:
    """(x of shape (C, H, W), label or None)."""
    import numpy as np

    check_non_negative("--index", args.index)
    if args.input:
        try:
            array = np.load(args.input)
        except (OSError, ValueError) as error:
            raise UsageError(f"--input {args.input}: {error}") from None
        shape = facts.get("input_shape")
        if shape is not None and array.ndim == len(shape) + 1:
            if args.index >= array.shape[0]:
                raise UsageError(f"--index {args.index} out of range for {array.shape[0]} inputs")
            array = array[args.index]
        return array, args.label
    dataset = args.dataset or facts.get("dataset")
    if dataset is None:
        raise UsageError("give --input x.npy or --dataset (the model records no dataset)")
    data = load_split(dataset, args.split, args.data_dir, args.index + 1)
    if args.index >= len(data):
        raise UsageError(f"--index {args.index} out of range for {len(data)} examples")
    label = args.label if args.label is not None else int(data.labels[args.index])
    return data.images[args.index], label


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nobound.autodiff.tensor import Tensor, no_grad
    from nobound.backend import to_device, to_numpy
    from nobound.bounds import (
        compute_bounds,
        layer_linear_bounds,
        linf_ball,
        margin_spec,
        resolve_method,
    )

    method = resolve_method(args.method)
    check_non_negative("--eps", args.eps)
    check_device(args.device)
    if args.save_matrices and Path(args.save_matrices).suffix not in (".npz", ".h5", ".hdf5"):
        raise UsageError("--save-matrices must end in .npz or .h5")
    model, facts = load_network(args.model, args.device)
    x, label = load_example(args, facts)
    dtype = model.parameters()[0].dtype if model.parameters() else np.float32
    x = to_device(np.asarray(x, dtype=dtype), args.device)[None]
    expected = facts.get("input_shape")
    if expected is not None and tuple(expected) != tuple(x.shape[1:]):
        raise UsageError(f"input of shape {tuple(x.shape[1:])} does not fit the model's "
                         f"{tuple(expected)}")
    region = linf_ball(x, args.eps)
    start = time.perf_counter()
    with no_grad():
        logits = to_numpy(model(Tensor(x)).data)[0]
        classes = logits.shape[-1]
        if label is not None and not 0 <= label < classes:
            raise UsageError(f"--label {label} out of range for {classes} classes")
        spec = None if label is None else \
            to_device(margin_spec(np.asarray([label]), classes, dtype=x.dtype), args.device)
        result = compute_bounds(model, region, method=method, spec=spec,
                                return_linear=bool(args.save_matrices and args.layer is None),
                                alpha_steps=args.alpha_steps,
                                alpha_step_size=args.alpha_step_size)
        matrices = layer_linear_bounds(model, region, args.layer, method=method) \
            if args.layer is not None else result.linear
    seconds = time.perf_counter() - start
    lower, upper = to_numpy(result.lower.data)[0], to_numpy(result.upper.data)[0]
    report = {"model": args.model, "method": method, "eps": args.eps, "index": args.index,
              "label": label, "predicted": int(np.argmax(logits)),
              "bounds_on": "logits" if label is None else "margins", "seconds": seconds,
              "lower": lower.tolist(), "upper": upper.tolist()}
    if label is not None:
        report["others"] = [j for j in range(classes) if j != label]
        report["certified"] = bool(np.all(lower > 0))
    if args.save_matrices:
        report["matrices"] = str(matrices.save(args.save_matrices))
    if args.layer is not None:
        report["layer"] = args.layer
    print(json.dumps(report, indent=2) if args.json else _text(report, matrices, args.layer))
    return 0


def _text(report: dict[str, Any], matrices: Any, layer: int | None) -> str:
    import numpy as np

    lines = [f"{report['method']} bounds, eps {report['eps']:g}, example {report['index']} "
             f"(predicted {report['predicted']}, {report['seconds']:.2f} s)"]
    if report["bounds_on"] == "margins":
        for j, low, up in zip(report["others"], report["lower"], report["upper"], strict=True):
            lines.append(f"  y_{report['label']} - y_{j}: [{low: .6f}, {up: .6f}]")
        lines.append("certified" if report["certified"] else "not certified")
    else:
        for j, (low, up) in enumerate(zip(report["lower"], report["upper"], strict=True)):
            lines.append(f"  y_{j}: [{low: .6f}, {up: .6f}]")
    if layer is not None:
        dense = matrices.to_dense()
        with np.printoptions(precision=4, threshold=200, edgeitems=3, linewidth=100):
            lines.append(f"layer {layer}: A_l x + b_l <= z <= A_u x + b_u, "
                         f"A of shape {dense['A_l'].shape[1:]} (rows x inputs)")
            for name in ("A_l", "b_l", "A_u", "b_u"):
                lines.append(f"{name} =\n{dense[name][0]}")
    if "matrices" in report:
        lines.append(f"matrices written to {report['matrices']}")
    return "\n".join(lines)

