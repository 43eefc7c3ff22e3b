"""Certifying a test set in pieces: by hand on several machines, or on a Ray cluster.

By hand, ``nobound certify … --shard i/K`` (i = 0 … K−1) certifies the samples i, i + K,
i + 2K, … (interleaved, so hard and easy samples spread evenly) into its own results file
``<stem>.shard<i>of<K>.jsonl``, resumable like the whole run's. Copy the K files into one
folder and ``nobound certify … --merge`` (same settings) checks that every file was
written with these settings and that together they hold every sample, then writes the
files a single process writes: ``<stem>.jsonl`` with the records in sample order, and
the table (``.json``, ``.md``).

On Ray (``--ray [ADDRESS]``), each sample is one task. The certifier (the model in
float64 and the settings) is put in the object store once; a task gets it and one image,
and returns the verdict. The driver appends each record to ``<stem>.jsonl`` as it
arrives (an interrupted run resumes from there, as a single process does) and, when all
are in, rewrites the file in sample order, so it ends identical in form to a single
process's. Per-sample times are wall-clock times on the worker: a timeout means the
same seconds, but a busier machine decides fewer samples within them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nobound.certify.evaluation import SettingsMismatch, read_results, sample_record

_SHARD_FILE = re.compile(r"\.shard(\d+)of(\d+)\.jsonl$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/K"`` → (i, K) with 0 ≤ i < K; anything else raises ValueError (one line)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"--shard expects i/K (e.g. 0/4), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < K")
    return index, count


def shard_indices(count: int, shard: tuple[int, int]) -> list[int]:
    """The samples of shard (i, K) among ``count``: i, i + K, i + 2K, …"""
    index, shards = shard
    return list(range(index, count, shards))


def shard_path(out: Path, stem: str, shard: tuple[int, int]) -> Path:
    return out / f"{stem}.shard{shard[0]}of{shard[1]}.jsonl"


def write_results(path: Path, header: dict[str, Any], records: Sequence[dict[str, Any]]
                  ) -> None:
    """The results file of a single process: the header, then the records in sample
    order (written to a temporary file and renamed: never half-written)."""
    lines = [json.dumps({"header": header})]
    lines += [json.dumps(record) for record in sorted(records, key=lambda r: r["index"])]
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def merge_shards(out: Path, stem: str, header: dict[str, Any], count: int
                 ) -> list[dict[str, Any]]:
    """Records of samples 0 … count−1 from the shard files in ``out``, written as
    ``<stem>.jsonl``. Raises ValueError naming what is missing or mismatched."""
    files = sorted(out.glob(f"{stem}.shard*of*.jsonl"))
    if not files:
        raise ValueError(f"no shard files {stem}.shard<i>of<K>.jsonl in {out}")
    counts = {int(_SHARD_FILE.search(f.name).group(2)) for f in files}
    if len(counts) != 1:
        raise ValueError(f"shard files of different splits in {out}: K = {sorted(counts)}")
    records: dict[int, dict[str, Any]] = {}
    for path in files:
        try:
            records.update(read_results(path, header))
        except SettingsMismatch as error:
            raise ValueError(str(error).split(" (")[0] + " (other settings)") from None
    missing = [i for i in range(count) if i not in records]
    if missing:
        shards = counts.pop()
        unfinished = sorted({i % shards for i in missing})
        raise ValueError(f"{len(missing)} of {count} samples are not in the shard files "
                         f"(first: {missing[0]}; unfinished shards: "
                         f"{', '.join(f'{s}/{shards}' for s in unfinished)})")
    merged = [records[i] for i in range(count)]
    write_results(out / f"{stem}.jsonl", header, merged)
    return merged


def _has_header(path: Path) -> bool:
    return path.exists() and bool(path.read_text(encoding="utf-8").strip())


def _certify_one(certifier: Any, image: np.ndarray, label: int, eps: float) -> Any:
    return certifier.certify_sample(image, label, eps)


def certify_on_ray(certifier: Any, images: np.ndarray, labels: np.ndarray, eps: float,
                   results_path: Path, header: dict[str, Any], address: str | None = None,
                   on_sample: Callable[[dict[str, Any]], None] | None = None,
                   certificate_dir: Path | None = None) -> list[dict[str, Any]]:
    """Certify every sample as a Ray task, resuming from ``results_path`` (see the module
    docstring); the records in sample order, as :func:`certify_dataset` returns them."""
    from nobound.certify.evaluation import _append
    from nobound.distributed.cluster import connect

    ray = connect(address)
    records = read_results(results_path, header)
    todo = [i for i in range(len(labels)) if i not in records]
    task = ray.remote(num_cpus=1, max_retries=3)(_certify_one)
    shared = ray.put(certifier)
    pending = {task.remote(shared, np.asarray(images[i]), int(labels[i]), eps): i
               for i in todo}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(done[0])
        verdict = ray.get(done[0])
        record = sample_record(index, int(labels[index]), verdict, certificate_dir)
        if not records and not _has_header(results_path):  # written with the first sample
            results_path.write_text(json.dumps({"header": header}) + "\n", encoding="utf-8")
        _append(results_path, record)
        records[index] = record
        if on_sample is not None:
            on_sample(record)
    ordered = [records[i] for i in range(len(labels))]
    write_results(results_path, header, ordered)
    return ordered


class MergeError(ValueError):
    """The shard files cannot be merged (missing samples, other settings, other K)."""


@dataclass(frozen=True)
class Split:
    """How ``certify`` divides its samples: a shard (i, K), a merge, Ray, or none."""

    shard: tuple[int, int] | None = None
    merge: bool = False
    ray: str | None = None  # "local" or an address

    @classmethod
    def from_flags(cls, shard: str | None, merge: bool, ray: str | None) -> Split:
        """From ``--shard``, ``--merge``, ``--ray``; ValueError (one line) if they clash."""
        if sum([shard is not None, merge, ray is not None]) > 1:
            raise ValueError("--shard, --merge and --ray exclude each other")
        return cls(None if shard is None else parse_shard(shard), merge, ray)


def certify_split(split: Split, certifier: Any, images: np.ndarray, labels: np.ndarray,
                  eps: float, out: Path, stem: str, header: dict[str, Any],
                  on_sample: Callable[[dict[str, Any]], None] | None = None,
                  certificate_dir: Path | None = None) -> list[dict[str, Any]]:
    """The records of this invocation: one shard's, the merged ones, Ray's, or (no split)
    :func:`~nobound.certify.evaluation.certify_dataset`'s."""
    from nobound.certify.evaluation import certify_dataset

    if split.merge:
        try:
            return merge_shards(out, stem, header, len(labels))
        except ValueError as error:
            raise MergeError(str(error)) from None
    if split.ray is not None:
        return certify_on_ray(certifier, images, labels, eps, out / f"{stem}.jsonl", header,
                              None if split.ray == "local" else split.ray, on_sample,
                              certificate_dir)
    if split.shard is not None:
        return certify_dataset(certifier, images, labels, eps,
                               shard_path(out, stem, split.shard), header,
                               shard_indices(len(labels), split.shard), on_sample,
                               certificate_dir)
    return certify_dataset(certifier, images, labels, eps, out / f"{stem}.jsonl", header,
                           on_sample=on_sample, certificate_dir=certificate_dir)
