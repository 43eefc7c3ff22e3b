"""Certifying a test set: resumable per-sample results and the paper's accuracy table.

Per sample the certifier's verdict is appended, as one JSON line, to a results file that
starts with a header of the settings (model fingerprint, dataset, split, eps, timeout …).
A rerun with the same settings skips the samples already in the file; other settings are
refused rather than mixed. From the records:

* natural accuracy: the clean input is classified correctly;
* adversarial accuracy: correct, and the PGD attack found no replayable counterexample
  (an upper bound on robust accuracy, as in the paper's tables);
* certified accuracy: the verdict is ``certified`` (a lower bound on robust accuracy).

A sample falsified by branch and bound after PGD failed counts as adversarially robust
but not certified, exactly as PGD-based adversarial accuracy would count it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nobound.certify.pipeline import Certifier


class SettingsMismatch(ValueError):
    """The results file was written with other settings."""


def read_results(path: Path, header: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Finished samples by index; a missing file is empty; a different header refused."""
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return {}
    stored = json.loads(lines[0]).get("header")
    if stored != header:
        raise SettingsMismatch(f"{path} was written with other settings ({stored}); use "
                               f"another output directory or delete it")
    records = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by an interruption: redo that sample
            continue
        records[int(record["index"])] = record
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def sample_record(index: int, label: int, verdict: Any,
                  certificate_dir: Path | None) -> dict[str, Any]:
    """One sample's JSONL record; its certificate saved to ``certificate_dir`` if asked."""
    record = {"index": int(index), "label": int(label), **verdict.to_json()}
    if certificate_dir is not None and verdict.certificate is not None:
        from nobound.certify.certificate import save_certificate

        certificate_dir.mkdir(parents=True, exist_ok=True)
        path = save_certificate(verdict.certificate,
                                certificate_dir / f"sample{index:05d}.json.gz")
        record["certificate"] = str(path)
    return record


def certify_dataset(certifier: Certifier, images: np.ndarray, labels: np.ndarray,
                    eps: float, results_path: Path, header: dict[str, Any],
                    indices: Sequence[int] | None = None,
                    on_sample: Callable[[dict[str, Any]], None] | None = None,
                    certificate_dir: Path | None = None,
                    chunk: int = 256) -> list[dict[str, Any]]:
    """Certify samples (all, or ``indices``), resuming from ``results_path``.

    Samples go through :func:`nobound.certify.batched.certify_batch` ``chunk`` at a time
    (natural prediction and PGD batched, the search per sample); each record is appended
    as soon as its chunk is done, in sample order."""
    from nobound.certify.batched import certify_batch

    records = read_results(results_path, header)
    # the header is written with the first finished sample: a run that stops before any
    # (an error, an interruption) leaves no file that would refuse the next run
    fresh = not results_path.exists() or not results_path.read_text(encoding="utf-8").strip()
    indices = range(len(labels)) if indices is None else indices
    pending = [int(index) for index in indices if index not in records]
    for chunk_start in range(0, len(pending), max(1, chunk)):
        chunk_indices = pending[chunk_start:chunk_start + max(1, chunk)]
        verdicts = certify_batch(certifier, images[chunk_indices], labels[chunk_indices],
                                 eps)
        for index, verdict in zip(chunk_indices, verdicts, strict=True):
            record = sample_record(index, int(labels[index]), verdict, certificate_dir)
            if fresh:
                results_path.write_text(json.dumps({"header": header}) + "\n",
                                        encoding="utf-8")
                fresh = False
            _append(results_path, record)
            records[index] = record
            if on_sample is not None:
                on_sample(record)
    return [records[i] for i in indices]


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracies (%) and verdict statistics of finished samples."""
    n = len(records)
    if n == 0:
        return {"n": 0}
    natural = sum(r.get("natural_correct", False) for r in records)
    adversarial = sum(r.get("adversarial_robust", False) for r in records)
    certified = sum(r["status"] == "certified" for r in records)
    times = [r["seconds"] for r in records]
    return {"n": n, "natural_accuracy": 100.0 * natural / n,
            "certified_accuracy": 100.0 * certified / n,
            "adversarial_accuracy": 100.0 * adversarial / n,
            "verdicts": dict(Counter(r["status"] for r in records)),
            "decided_by": dict(Counter(r["method"] for r in records)),
            "median_seconds": float(np.median(times)), "total_seconds": float(np.sum(times))}


def markdown_report(summary: dict[str, Any], records: Sequence[dict[str, Any]],
                    title: str) -> str:
    """The accuracy table, then one row per sample."""
    lines = [f"## {title}", "",
             "| n | natural acc. (%) | certified acc. (%) | adversarial acc. (%) | "
             "median time (s) |", "|---|---|---|---|---|"]
    if summary.get("n"):
        lines.append(f"| {summary['n']} | {summary['natural_accuracy']:.2f} | "
                     f"{summary['certified_accuracy']:.2f} | "
                     f"{summary['adversarial_accuracy']:.2f} | "
                     f"{summary['median_seconds']:.3f} |")
        lines += ["", "Verdicts: " + ", ".join(f"{k} {v}" for k, v in
                                               sorted(summary["verdicts"].items())),
                  "Decided by: " + ", ".join(f"{k} {v}" for k, v in
                                             sorted(summary["decided_by"].items()))]
    lines += ["", "| sample | label | verdict | decided by | time (s) | sub-problems |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['index']} | {r['label']} | {r['status']} | {r['method']} | "
              f"{r['seconds']:.3f} | {r['bounded']} |" for r in records]
    return "\n".join(lines) + "\n"
