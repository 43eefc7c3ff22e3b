"""VNN-COMP categories through the certifier: solved / wrong / unknown against the consensus.

    OPENBLAS_NUM_THREADS=1 python benchmarks/vnncomp_bab.py ../shared/vnncomp/2022/oval21 \\
        --scale 0.01 --cpu-clock --bab-method beta-crown --branching fsb \\
        --out benchmarks/results/vnncomp_full_oval21.json

Reads the category's ``results.csv`` (onnx, vnnlib, timeout, consensus, published tool
verdicts; see the README of the benchmark folder) by path, takes ``--sample`` instances
spread evenly over the file (default: all), and decides each as ``nobound verify`` does:
the certifier configuration comes from the same flags and builder
(:func:`nobound.cli.certify.add_certifier_flags`, :func:`~nobound.cli.certify.certifier_config`;
``--timeout`` is replaced by the competition's timeout × ``--scale``), networks whose layers
branch and bound cannot split or the rigorous checker cannot read get the same reduced
configuration, and a ``sat`` counts only when its counterexample replays in the ONNX file's
arithmetic. An answer is *solved* when it is ``unsat``/``sat`` and agrees with the consensus,
*wrong* when it contradicts it, *unconfirmed* when no published tool decided the instance.
Instances whose files do not import are counted ``error`` with the reason. Loading the files
is not part of the timeout (its CPU time is recorded).

Resumable: every finished instance is appended to ``OUT.jsonl`` (one JSON record a line) and
a rerun with the same ``--out`` skips the instances already there; ``OUT`` (JSON) gets the
summary and all records after every instance.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from vnncomp_rows import category_rows

from nobound.cli.certify import add_certifier_flags, certifier_config


def _plain(path: Path, scratch: Path) -> str:
    """The file itself, or a decompressed copy of a ``.gz`` one in ``scratch``."""
    if path.suffix != ".gz":
        return str(path)
    target = scratch / path.name[:-3]
    if not target.exists():
        with gzip.open(path, "rb") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
    return str(target)


def _find(folder: Path, name: str) -> Path:
    path = folder / name
    return path if path.exists() else folder / (name + ".gz")


def network_config(network: Any, config: Any) -> tuple[Any, str]:
    """The configuration ``nobound verify`` uses for this network, and the note why it
    was reduced ('' if not)."""
    from nobound.cli.verify import NOT_SPLIT_BY_BAB, unconfirmable_layers

    notes = []
    not_split = sorted({type(layer).__name__ for layer in network.model.layers
                        if type(layer).__name__ in NOT_SPLIT_BY_BAB})
    if not_split and config.bab:
        # nothing follows the whole-box bounds: end them with the tightest one, alpha-CROWN
        # (with branch and bound, beta-CROWN's root supersedes it)
        config = replace(config, bab=False,
                         methods=tuple(dict.fromkeys((*config.methods, "alpha-crown"))))
        notes.append(f"no branch and bound ({', '.join(not_split)}): whole-box bounds "
                     f"{', '.join(config.methods)}")
    unchecked = unconfirmable_layers(network.model, network.input_shape)
    if unchecked and not config.allow_roundoff_errors:
        config = replace(config, methods=(), bab=False)
        notes.append(f"no proof can be confirmed ({unchecked}): attacks only")
    return config, "; ".join(notes)


def run_instance(folder: Path, row: dict, scale: float, config: Any, scratch: Path,
                 certifiers: dict | None = None) -> dict:
    """Decide one instance. ``certifiers`` keeps one Certifier per (network file, timeout),
    as ``nobound certify`` keeps one for a test set: its float64 model, dense form and the
    checker's network are built once per network, not per instance (``nobound verify``, a
    process per instance, builds them every time)."""
    from nobound.certify.pipeline import Certifier
    from nobound.certify.replay import network_replay
    from nobound.cli.verify import load_problems, replay_counterexample

    record: dict[str, Any] = {"onnx": row["onnx"], "vnnlib": row["vnnlib"],
                              "consensus": row["consensus"],
                              "timeout": float(row["timeout_s"]) * scale}
    loading = time.process_time()
    try:
        network, prop, problems = load_problems(_plain(_find(folder, row["onnx"]), scratch),
                                                _plain(_find(folder, row["vnnlib"]), scratch))
    except Exception as error:  # noqa: BLE001 - recorded, the run goes on
        record.update(answer="error", outcome="error",
                      reason=f"{type(error).__name__}: {error}"[:200])
        return record
    record["load_cpu_seconds"] = time.process_time() - loading
    config, note = network_config(network, replace(config, timeout=record["timeout"]))
    key = (row["onnx"], record["timeout"])
    certifiers = {} if certifiers is None else certifiers
    if key not in certifiers:
        certifiers.clear()  # instances come grouped by network: keep one
        certifiers[key] = Certifier(network.model, network.input_shape, config,
                                    replay=network_replay(network))
    certifier = certifiers[key]
    start, cpu = time.perf_counter(), time.process_time()
    try:
        verdict = certifier.verify(problems)
    except Exception as error:  # noqa: BLE001 - recorded as an error, the run goes on
        record.update(answer="error", outcome="error", seconds=time.perf_counter() - start,
                      reason=f"{type(error).__name__}: {error}"[:200], note=note)
        return record
    answer = {"certified": "unsat", "falsified": "sat"}.get(verdict.status, "unknown")
    if answer == "sat" and replay_counterexample(
            network, prop, int(verdict.details.get("problem", 0)),
            verdict.counterexample.input) is None:
        answer = "unknown"  # as `nobound verify`: only a replayed input counts
    record.update(answer=answer, method=verdict.method, bounded=verdict.bounded,
                  lower_bound=float(verdict.lower_bound)
                  if verdict.lower_bound is not None else None,
                  seconds=time.perf_counter() - start,
                  cpu_seconds=time.process_time() - cpu, reason=verdict.reason, note=note,
                  outcome="unknown" if answer == "unknown" else
                  "solved" if answer == row["consensus"] else
                  "unconfirmed" if row["consensus"] == "unknown" else "wrong")
    return record


def summary(records: list[dict]) -> dict:
    """Instances by outcome (solved / wrong / unconfirmed / unknown / error), by the
    answer given (answer_sat / answer_unsat / answer_unknown / answer_error), and
    ``solved_late``: solved, but after the timeout (the deadline is checked between rounds,
    and the rigorous check of a finished proof runs to its end) — not solved in time."""
    counts: dict[str, int] = {"instances": len(records)}
    for record in records:
        keys = [record.get("outcome", record["answer"]), "answer_" + record["answer"]]
        if record.get("outcome") == "solved" and record["seconds"] > record["timeout"]:
            keys.append("solved_late")
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    return counts


def _read_ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a killed run: that instance reruns
            continue
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a category folder with results.csv")
    parser.add_argument("--sample", type=int, default=0, help="instances (0: all)")
    parser.add_argument("--only", help="keep instances whose onnx/vnnlib path contains this")
    parser.add_argument("--unsolved-in", type=Path, metavar="LEDGER",
                        help="keep only the instances a previous run's ledger (.jsonl) "
                             "did not solve (a rerun of its unknowns after a change)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the competition's timeout")
    add_certifier_flags(parser, timeout=1.0)
    parser.add_argument("--cpu-clock", action="store_true",
                        help="deadlines in this process's CPU time (a loaded machine then "
                             "does not eat the budget; use one BLAS thread)")
    parser.add_argument("--skip-proof-check", action="store_true",
                        help="allow_roundoff_errors: measure the search without the "
                             "rigorous re-check of its proofs (not a sound verdict)")
    parser.add_argument("--out", type=Path, help="summary JSON; OUT.jsonl is the ledger")
    args = parser.parse_args()
    if not (args.folder / "results.csv").is_file():
        parser.exit(2, f"{args.folder}: no results.csv (not a benchmark category)\n")
    if args.cpu_clock:
        # every deadline in nobound.certify reads time.perf_counter: make it CPU time
        time.perf_counter = time.process_time
    config = certifier_config(args, allow_roundoff_errors=args.skip_proof_check)
    settings = {"folder": str(args.folder), "scale": args.scale, "sample": args.sample,
                "only": args.only,
                "unsolved_in": str(args.unsolved_in) if args.unsolved_in else None,
                "bab_method": config.bab_method,
                "branching": config.branching, "bab_domain": config.bab_domain,
                "methods": list(config.methods), "max_nodes": config.max_nodes,
                "proof_check": not args.skip_proof_check,
                "clock": "process CPU time" if args.cpu_clock else "wall",
                "cpus": os.cpu_count()}
    ledger = args.out.with_suffix(".jsonl") if args.out else None
    records = _read_ledger(ledger) if ledger else []
    done = {(r["onnx"], r["vnnlib"]) for r in records}
    rows = category_rows(args.folder, args.only, args.sample)
    if args.unsolved_in:
        if not args.unsolved_in.is_file():
            parser.exit(2, f"{args.unsolved_in}: no such ledger\n")
        solved = {(r["onnx"], r["vnnlib"]) for r in _read_ledger(args.unsolved_in)
                  if r["outcome"] == "solved"}
        rows = [r for r in rows if (r["onnx"], r["vnnlib"]) not in solved]
    certifiers: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        for row in rows:
            if (row["onnx"], row["vnnlib"]) in done:
                continue
            record = run_instance(args.folder, row, args.scale, config, Path(scratch),
                                  certifiers)
            records.append(record)
            print(f"{row['onnx']} {row['vnnlib']}: {record['answer']} by "
                  f"{record.get('method', '-')} in {record.get('seconds', 0):.1f} s "
                  f"({record.get('bounded', 0)} sub-problems; consensus {row['consensus']})"
                  f" -> {record['outcome']} {record.get('reason', '')}", flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with open(ledger, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                args.out.write_text(json.dumps({**settings, "summary": summary(records),
                                                "instances": records}, indent=1))
    print(json.dumps(summary(records)))


if __name__ == "__main__":
    main()
