"""PGPE population evaluation: nobound's fused IBP vs a PyTorch loop, one network at a time.

    NOBOUND_DATA=../shared/data python benchmarks/gls_torch_pgpe.py \
        --out benchmarks/results/gls_torch_pgpe.json

evotorch evaluates a PGPE population by writing each member's parameter vector into one
``nn.Module`` and running it (``NEProblem``: ``vector_to_parameters`` then forward). The
PyTorch side does exactly that with a small IBP written here (eq. 3, the margin
specification folded into the last layer as CTBench does), under ``torch.no_grad`` on
this CPU; nobound evaluates all members in one call with a population axis. Both compute
the robust cross-entropy of the same members on the same batch (checked). The ratio is
PyTorch loop time / nobound fused time (> 1: nobound is faster).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import torch
from gls_common import gls_parser, machine, mnist_batch, mnist_model, timed, write_results
from gls_population import population

from nobound.training.certified_loss import certified_loss
from nobound.training.population import evaluate_population


def torch_network(model) -> torch.nn.Sequential:
    """The same Conv/ReLU/Flatten/Linear stack as ``model`` (cnn3 / cnn3_tiny)."""
    from nobound.nn.activation import Flatten, ReLU
    from nobound.nn.layers import Conv2d, Linear

    layers = []
    for layer in model.layers:
        if isinstance(layer, Conv2d):
            layers.append(torch.nn.Conv2d(layer.in_channels, layer.out_channels,
                                          layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, Linear):
            layers.append(torch.nn.Linear(layer.in_features, layer.out_features))
        elif isinstance(layer, ReLU):
            layers.append(torch.nn.ReLU())
        elif isinstance(layer, Flatten):
            layers.append(torch.nn.Flatten())
        else:
            raise TypeError(f"no PyTorch counterpart for {layer!r}")
    return torch.nn.Sequential(*layers)


def torch_ibp_robust_loss(net: torch.nn.Sequential, x: torch.Tensor, labels: torch.Tensor,
                          eps: float) -> torch.Tensor:
    """IBP (eq. 3) to the last layer, margins y_t − y_j bounded through C·W folded in."""
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    layers = list(net)
    for layer in layers[:-1]:
        if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
            center, radius = (upper + lower) / 2, (upper - lower) / 2
            if isinstance(layer, torch.nn.Conv2d):
                mid = layer(center)
                rad = torch.nn.functional.conv2d(radius, layer.weight.abs(), None,
                                                 layer.stride, layer.padding)
            else:
                mid, rad = layer(center), radius @ layer.weight.abs().T
            lower, upper = mid - rad, mid + rad
        else:
            lower, upper = layer(lower), layer(upper)
    last = layers[-1]
    classes = last.out_features
    eye = torch.eye(classes, dtype=x.dtype)
    spec = eye[labels].unsqueeze(1) - eye.unsqueeze(0)           # (B, C, C): e_t − e_j
    keep = ~torch.nn.functional.one_hot(labels, classes).bool()  # drop j = t
    spec = spec[keep].reshape(len(labels), classes - 1, classes)
    weight, bias = spec @ last.weight, spec @ last.bias            # (B, K, in), (B, K)
    center, radius = (upper + lower) / 2, (upper - lower) / 2
    margin_lower = (weight @ center.unsqueeze(-1)).squeeze(-1) + bias \
        - (weight.abs() @ radius.unsqueeze(-1)).squeeze(-1)
    zeros = torch.zeros(len(labels), 1, dtype=x.dtype)
    return torch.logsumexp(torch.cat([zeros, -margin_lower], dim=1), dim=1).mean()


def torch_loop(net, vectors: torch.Tensor, x: torch.Tensor, labels: torch.Tensor,
               eps: float) -> np.ndarray:
    losses = []
    with torch.no_grad():
        for vector in vectors:
            torch.nn.utils.vector_to_parameters(vector, net.parameters())
            losses.append(float(torch_ibp_robust_loss(net, x, labels, eps)))
    return np.array(losses)


def measure(arch: str, batch: int, members: int, repeats: int) -> dict:
    images, labels, source = mnist_batch(batch)
    model = mnist_model(arch)
    layout, vectors = population(model, members)
    net = torch_network(model)
    # nobound's layout and PyTorch's parameters() agree: weight then bias, layer by layer
    torch_vectors = torch.from_numpy(vectors.copy())
    x, y = torch.from_numpy(images), torch.from_numpy(labels)

    def ours():
        return evaluate_population(
            lambda p: certified_loss(model, images, labels, 0.1, "ibp", params=p).loss,
            layout, lambda a, b: vectors[a:b], members)

    def theirs():
        return torch_loop(net, torch_vectors, x, y, 0.1)

    fused, _, our_losses = timed(ours, repeats)
    loop, _, their_losses = timed(theirs, repeats)
    agreement = float(np.max(np.abs(our_losses - their_losses)))
    record = {"arch": arch, "batch": batch, "members": members, "data": source,
              "nobound_fused_seconds": fused, "torch_loop_seconds": loop,
              "torch_over_nobound": loop / fused, "max_abs_loss_difference": agreement,
              "torch_threads": torch.get_num_threads()}
    print(f"{arch:9s} B={batch:4d} P={members:3d} nobound fused {fused:7.3f} s  torch loop "
          f"{loop:7.3f} s  ratio {loop / fused:5.2f} (|Δloss| ≤ {agreement:.1e})", flush=True)
    return record


def main() -> None:
    parser = gls_parser(__doc__, relaxations=False)
    parser.add_argument("--settings", nargs="+", default=["32:256", "512:32"],
                        help="batch:members pairs (default 32:256 512:32)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/gls_torch_pgpe.json")
    args = parser.parse_args()
    started = time.time()
    records = [measure(arch, *(int(v) for v in setting.split(":")), args.repeats)
               for setting in args.settings for arch in args.archs]
    write_results(args.out, {"benchmark": "gls_torch_pgpe", "machine": machine(),
                             "torch": torch.__version__, "records": records,
                             "wall_seconds": time.time() - started})


if __name__ == "__main__":
    main()
