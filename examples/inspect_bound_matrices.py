"""Inspect the symbolic bounds A_l x + b_l ≤ v ≤ A_u x + b_u (eq. 2/4) of any layer.

    python examples/inspect_bound_matrices.py [--model run/model.h5] [--layer 2]

Without ``--model`` a cnn3 is built with a fixed seed (trained weights make the picture
more interesting: pass any checkpoint written by ``nobound train``). For the chosen layer
the script prints the shapes of the DeepPoly matrices, checks that concretising them over
the input box reproduces the numeric bounds, checks soundness on random points, and saves
the dense matrices to ``bound_matrices.npz``. Runtime: a few seconds.

Output of a run (untrained cnn3, layer 2 = the second convolution):

    layer 2 (Conv2d): A_l (1, 392, 784), b_l (1, 392)
    concretised A matches the numeric bounds: max difference 6.0e-08  (float32 rounding)
    sampled 256 points: all inside [lower, upper]
    saved bound_matrices.npz
"""

from __future__ import annotations

import argparse

import numpy as np

from nobound.autodiff import Tensor, no_grad
from nobound.bounds import compute_bounds, layer_linear_bounds, linf_ball
from nobound.nn import Sequential, build_model, kaiming_uniform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint (.h5); default: a seeded cnn3")
    parser.add_argument("--layer", type=int, default=2, help="layer index (default 2)")
    parser.add_argument("--eps", type=float, default=0.02)
    args = parser.parse_args()
    if args.model:
        from nobound.io.checkpoint import load_checkpoint

        model = load_checkpoint(args.model).model.eval()
    else:
        model = kaiming_uniform(build_model("cnn3"), seed=0).eval()
    x = Tensor(np.random.default_rng(0).uniform(0, 1, (1, 1, 28, 28)).astype(np.float32))
    region = linf_ball(x, args.eps)

    with no_grad():
        linear = layer_linear_bounds(model, region, args.layer, method="deeppoly")
    dense = linear.to_dense()
    name = type(model.layers[args.layer]).__name__
    print(f"layer {args.layer} ({name}): A_l {dense['A_l'].shape}, b_l {dense['b_l'].shape}")

    lower, upper = linear.concretize(region)
    # numeric bounds of that layer's output: bound the network cut after the layer
    prefix = Sequential(*model.layers[:args.layer + 1])
    with no_grad():
        numeric = compute_bounds(prefix, region, method="deeppoly")
    difference = max(float(np.abs(lower.data.reshape(-1) - numeric.lower.data.reshape(-1)).max()),
                     float(np.abs(upper.data.reshape(-1) - numeric.upper.data.reshape(-1)).max()))
    print(f"concretised A matches the numeric bounds: max difference {difference:.1e}")

    points = region.lower.data + np.random.default_rng(1).uniform(
        0, 1, (256, 1, 28, 28)).astype(np.float32) * (region.upper.data - region.lower.data)
    with no_grad():
        values = prefix(Tensor(points)).data.reshape(256, -1)
    inside = np.all(values >= lower.data.reshape(1, -1) - 1e-4) and \
        np.all(values <= upper.data.reshape(1, -1) + 1e-4)
    print(f"sampled 256 points: {'all inside' if inside else 'SOME OUTSIDE'} [lower, upper]")
    linear.save("bound_matrices.npz")
    print("saved bound_matrices.npz")


if __name__ == "__main__":
    main()
