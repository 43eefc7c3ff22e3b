"""The landscape figures of the paper (Figs. 2–5) computed by nobound.

    python examples/landscape_figures.py [--model run/model.h5] [--out figures]

Writes ``relu_relaxations.png`` (Fig. 2), ``toy_landscapes.png`` (Fig. 3),
``landscape.png`` + ``landscape.json`` (Fig. 4: the certified loss of a CNN3 along the
DeepPoly descent direction for IBP, CROWN-IBP and DeepPoly, original and smoothed) and
prints the Fig. 5 scores per σ. Without ``--model`` it first trains a cnn3 for two epochs
on the embedded Fashion-MNIST subset (the paper uses a PGD-trained CNN3 on MNIST: pass
one with ``--model``). Runtime: about 7 minutes of CPU time on 2 cores (3 relaxations ×
3 σ × 21 points × 16 samples, every point's samples one population call).
Fig. 5 scores of a run (fd = finite difference; smoothing lowers all three for
CROWN-IBP and DeepPoly; IBP's curve is already convex):

    ibp        σ=0       max_fd 2.54  mean_2nd_diff 54.1  D(f) -8.3e-07
    deeppoly   σ=0       max_fd 3.98  mean_2nd_diff  383  D(f)  5.8e-05
    deeppoly   σ=1e-05   max_fd 3.89  mean_2nd_diff  249  D(f)  3.4e-05
    deeppoly   σ=0.0001  max_fd 3.83  mean_2nd_diff  151  D(f)  5.1e-06
    deeppoly   σ=0.001   max_fd 3.80  mean_2nd_diff  113  D(f)  8.3e-07
The same from the CLI: ``nobound figures`` and ``nobound landscape``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nobound.analysis import plots
from nobound.analysis.landscape import loss_landscape
from nobound.autodiff import Tensor
from nobound.data import BatchLoader, load_dataset
from nobound.nn import build_model, kaiming_uniform
from nobound.training.losses import cross_entropy
from nobound.training.optim import Adam


def quick_model():
    train = load_dataset("fashion-mnist-embedded", "train")
    model = kaiming_uniform(build_model("cnn3"), seed=0)
    optimizer = Adam(dict(model.named_parameters()), lr=2e-3)
    for epoch in range(2):
        for images, labels in BatchLoader(train, 50, seed=0).epoch(epoch):
            optimizer.zero_grad()
            cross_entropy(model(Tensor(images)), labels).backward()
            optimizer.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--out", default="figures")
    parser.add_argument("--eps", type=float, default=0.01)
    args = parser.parse_args()
    out = Path(args.out)
    plots.plot_relu_relaxations(out / "relu_relaxations.png")
    plots.plot_toy(out / "toy_landscapes.png")
    if args.model:
        from nobound.io.checkpoint import load_checkpoint

        model = load_checkpoint(args.model).model.eval()
    else:
        model = quick_model()
    test = load_dataset("fashion-mnist-embedded", "test")
    x, y = test.images[:64].astype(model.parameters()[0].dtype), test.labels[:64]
    offsets = np.linspace(-2e-3, 2e-3, 21)
    curves = loss_landscape(model, x, y, args.eps, ["ibp", "crown-ibp", "deeppoly"],
                            [1e-5, 1e-4, 1e-3], offsets, samples=16)
    plots.plot_landscape(curves, out / "landscape.png")
    (out / "landscape.json").write_text(json.dumps([asdict(c) for c in curves], indent=1))
    for curve in curves:
        scores = "  ".join(f"{k} {v:9.3g}" for k, v in curve.scores.items())
        print(f"{curve.relaxation:10s} σ={curve.sigma:<7g} {scores}")
    print(f"wrote figures to {out}/")


if __name__ == "__main__":
    main()
