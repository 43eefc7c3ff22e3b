"""``nobound landscape``, ``nobound tightness`` and ``nobound figures`` (paper §3, Figs. 2–5).

* ``landscape``: the certified loss of a checkpoint along a direction in parameter space,
  original and Gaussian-smoothed, per relaxation and σ, with the three Fig. 5 scores;
* ``tightness``: certified accuracy over the radius and its AUC per relaxation;
* ``figures``: the toy figures (Fig. 2 and 3) computed by nobound itself.

Each writes JSON (and CSV where tabular) plus a PNG when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from nobound.cli import UsageError
from nobound.cli.common import (
    add_checkpoint_arguments,
    check_positive,
    load_split,
    write_json,
    write_text_atomically,
)

RELAXATION_CHOICES = ("ibp", "hbox", "crown-ibp", "deeppoly", "alpha-crown")


def _relaxations(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in RELAXATION_CHOICES]
    if unknown or not names:
        raise UsageError(f"unknown relaxation(s) {unknown or text!r}; choose from "
                         f"{', '.join(RELAXATION_CHOICES)}")
    return names


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{name} must be comma-separated numbers, got {text!r}") from None


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from nobound.io.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.model)
    dataset_name = args.dataset or checkpoint.config.get("dataset")
    if not dataset_name:
        raise UsageError("the checkpoint names no dataset; pass --dataset")
    dataset = load_split(dataset_name, args.split, args.data_dir, limit=args.n)
    model = checkpoint.model.eval()
    expected = tuple(checkpoint.architecture.get("input_shape") or dataset.input_shape)
    if tuple(dataset.input_shape) != expected:
        raise UsageError(f"dataset {dataset_name} has input shape {dataset.input_shape} but "
                         f"the model expects {expected}")
    return model, dataset.images, dataset.labels


def _plot(kind: str, data: Any, path: Path) -> str | None:
    try:
        from nobound.analysis import plots

        getattr(plots, kind)(data, path)
        return str(path)
    except ImportError:
        return None


def run_landscape(args: argparse.Namespace) -> int:
    from nobound.analysis.landscape import loss_landscape

    relaxations = _relaxations(args.relaxations)
    sigmas = _floats(args.sigmas, "--sigmas")
    check_positive("--eps", args.eps)
    check_positive("--span", args.span)
    if args.points < 3:
        raise UsageError("--points must be at least 3")
    model, images, labels = _load(args)
    out = Path(args.out)
    offsets = np.linspace(-args.span, args.span, args.points)
    curves = loss_landscape(model, images, labels, args.eps, relaxations, sigmas, offsets,
                            samples=args.samples, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "landscape.json", [asdict(c) for c in curves])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["relaxation", "sigma", "offset", "mean", "band_low", "band_high"])
    for curve in curves:
        for row in zip(curve.offsets, curve.mean, curve.band_low, curve.band_high,
                       strict=True):
            writer.writerow([curve.relaxation, curve.sigma, *row])
    write_text_atomically(out / "landscape.csv", buffer.getvalue())
    png = _plot("plot_landscape", curves, out / "landscape.png")
    if args.population_sizes:
        from nobound.analysis.landscape import pgpe_surfaces

        sizes = [int(v) for v in _floats(args.population_sizes, "--population-sizes")]
        surfaces = pgpe_surfaces(model, images, labels, args.eps, relaxations[-1], sigmas,
                                 sizes, offsets, seed=args.seed)
        write_json(out / "pgpe_surfaces.json",
                   [{"population_size": n, **asdict(c)} for n, c in surfaces])
        _plot("plot_pgpe_surfaces", surfaces, out / "pgpe_surfaces.png")
    for curve in curves:
        scores = ", ".join(f"{k}={v:.4g}" for k, v in curve.scores.items())
        print(f"{curve.relaxation:12s} sigma={curve.sigma:<8g} {scores}")
    print(f"wrote {out / 'landscape.json'}" + (f" and {png}" if png else ""))
    return 0


def run_tightness(args: argparse.Namespace) -> int:
    from nobound.analysis.tightness import tightness

    relaxations = _relaxations(args.relaxations)
    check_positive("--max-eps", args.max_eps)
    model, images, labels = _load(args)
    curves = tightness(model, images, labels, relaxations, args.max_eps, args.points)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "tightness.json", [asdict(c) for c in curves])
    lines = ["| relaxation | AUC | mean margin width at max eps |", "|---|---|---|"]
    lines += [f"| {c.relaxation} | {c.auc:.4f} | {c.mean_margin_width:.4g} |" for c in curves]
    write_text_atomically(out / "tightness.md", "\n".join(lines) + "\n")
    png = _plot("plot_tightness", curves, out / "tightness.png")
    print("\n".join(lines))
    print(f"wrote {out / 'tightness.json'}" + (f" and {png}" if png else ""))
    return 0


def run_figures(args: argparse.Namespace) -> int:
    from nobound.analysis import plots

    out = Path(args.out)
    try:
        paths = [plots.plot_relu_relaxations(out / "relu_relaxations.png"),
                 plots.plot_toy(out / "toy_landscapes.png")]
    except ImportError as error:
        raise UsageError(str(error)) from None
    print("\n".join(f"wrote {p}" for p in paths))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(parser, "checkpoint (.h5) written by train")
    parser.add_argument("--n", type=int, default=128, help="test inputs to use (default 128)")
    parser.add_argument("--out", required=True, help="output directory")


def register(subparsers: Any) -> None:
    landscape = subparsers.add_parser(
        "landscape", help="loss along a parameter direction, original and smoothed (Fig. 4-5)",
        description="Evaluate the certified loss of a trained network along the normalised "
                    "DeepPoly descent direction, for each relaxation, unsmoothed and "
                    "Gaussian-smoothed with each sigma (Monte Carlo with a 95%% band), and "
                    "report the Fig. 5 scores.")
    _common(landscape)
    landscape.add_argument("--eps", type=float, required=True, help="perturbation radius")
    landscape.add_argument("--relaxations", default="ibp,crown-ibp,deeppoly")
    landscape.add_argument("--sigmas", default="1e-6,5e-5,5e-4",
                           help="comma-separated smoothing std devs (paper Fig. 4)")
    landscape.add_argument("--span", type=float, default=1e-3,
                           help="offsets in [-span, span] along the unit direction")
    landscape.add_argument("--points", type=int, default=51)
    landscape.add_argument("--samples", type=int, default=128, help="samples per point")
    landscape.add_argument("--seed", type=int, default=0)
    landscape.add_argument("--population-sizes",
                           help="also estimate the surface as PGPE does with these population "
                                "sizes and fresh samples per point, for the last relaxation "
                                "(Figs. 8, 10), e.g. 32,128,512")
    landscape.set_defaults(func=run_landscape)

    tight = subparsers.add_parser(
        "tightness", help="certified accuracy over the radius and its AUC per relaxation",
        description="Tightness of each relaxation as the normalised area under its "
                    "certified-accuracy-over-radius curve (Jovanovic et al. 2022).")
    _common(tight)
    tight.add_argument("--max-eps", type=float, required=True)
    tight.add_argument("--points", type=int, default=11)
    tight.add_argument("--relaxations", default="ibp,hbox,crown-ibp,deeppoly")
    tight.set_defaults(func=run_tightness)

    figures = subparsers.add_parser(
        "figures", help="the paper's toy figures (Fig. 2, Fig. 3) computed by nobound",
        description="Draw the ReLU relaxations (Fig. 2) and the toy landscapes (Fig. 3).")
    figures.add_argument("--out", required=True, help="output directory for the PNGs")
    figures.set_defaults(func=run_figures)
