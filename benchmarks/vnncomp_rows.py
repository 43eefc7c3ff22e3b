"""The instances of a VNN-COMP category, read from the ``results.csv`` of its folder.

``../shared/vnncomp/<year>/<category>/results.csv`` lists one instance per row (onnx and
vnnlib paths relative to the folder, timeout, consensus verdict, every tool's published
verdict and time; that folder's README). The benchmark scripts that walk a category read
it here, so the selection rules are written once.
"""

from __future__ import annotations

import csv
from pathlib import Path


def category_rows(folder: Path | str, only: str | None = None, sample: int = 0,
                  limit: int | None = None) -> list[dict[str, str]]:
    """The rows of ``folder/results.csv``, in file order: those whose onnx or vnnlib path
    contains ``only``; then ``sample`` of them spread evenly over the list (0: all); then
    the first ``limit`` (None: all)."""
    with open(Path(folder) / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if only:
        rows = [r for r in rows if only in r["onnx"] or only in r["vnnlib"]]
    if sample and sample < len(rows):
        step = len(rows) / sample
        rows = [rows[int(i * step)] for i in range(sample)]
    return rows if limit is None else rows[:limit]
