"""Run a VNN-COMP benchmark: instances CSV in, result files, a ledger and a summary out.

The instances file has one instance per line, ``onnx,vnnlib,timeout_s`` with paths
relative to the benchmark folder (the competition adds ``.gz`` to the files it ships
compressed; a path that does not exist is tried with ``.gz`` too). Each instance runs as
its own process, exactly as the competition runs ``run_instance.sh``:

    python -m nobound verify NET SPEC --timeout T --results-file OUT/<instance>.txt

with T = timeout_s × ``scale``. Its outcome goes to ``OUT/results.csv`` (the ledger) as
soon as it is known, so an interrupted run resumes where it stopped: instances already in
the ledger are not run again.

Given the published ``results.csv`` (columns ``onnx, vnnlib, …, consensus``), every
decided instance is compared with the consensus: the same answer *agrees*, the opposite
answer is a **contradiction** — a soundness bug until shown otherwise — and an answer where
no tool decided is *new* (no reference to check it against).
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nobound.vnncomp.result_file import read_result

LEDGER_FIELDS = ("onnx", "vnnlib", "timeout_s", "verdict", "seconds", "consensus",
                 "agreement")
# Seconds a child gets beyond its own timeout before it is killed from outside: the
# verifier keeps its deadline itself, this only guards against a hung interpreter.
HARD_KILL_GRACE = 30.0


@dataclass(frozen=True)
class Instance:
    onnx: str
    vnnlib: str
    timeout: float

    @property
    def key(self) -> tuple[str, str]:
        return instance_key(self.onnx, self.vnnlib)


@dataclass
class Outcome:
    instance: Instance
    verdict: str
    seconds: float
    consensus: str = ""

    @property
    def agreement(self) -> str:
        return agreement(self.verdict, self.consensus)


def instance_key(onnx: str, vnnlib: str) -> tuple[str, str]:
    """Paths compared without ``./`` and ``.gz`` (the CSVs differ in both)."""
    def clean(path: str) -> str:
        path = path.strip()
        while path.startswith("./"):
            path = path[2:]
        return path[:-3] if path.endswith(".gz") else path

    return clean(onnx), clean(vnnlib)


def agreement(verdict: str, consensus: str) -> str:
    """agree / CONTRADICTION / new (decided, no reference) / undecided / "" (no consensus)."""
    if verdict not in ("sat", "unsat"):
        return "undecided"
    if consensus in ("sat", "unsat"):
        return "agree" if consensus == verdict else "CONTRADICTION"
    return "new" if consensus else ""


def read_instances(path: str | Path) -> list[Instance]:
    """The instances of a VNN-COMP CSV (bad lines are errors naming the line)."""
    instances = []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise ValueError(f"{path}: line {number}: expected onnx,vnnlib,timeout")
            try:
                timeout = float(row[2])
            except ValueError:
                raise ValueError(f"{path}: line {number}: timeout {row[2]!r} is not a "
                                 f"number") from None
            instances.append(Instance(row[0].strip(), row[1].strip(), timeout))
    if not instances:
        raise ValueError(f"{path}: no instances")
    return instances


def read_consensus(path: str | Path) -> dict[tuple[str, str], str]:
    """Instance key → consensus (sat / unsat / unknown) from a published results.csv."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"onnx", "vnnlib", "consensus"} <= \
                set(reader.fieldnames):
            raise ValueError(f"{path}: needs the columns onnx, vnnlib and consensus")
        return {instance_key(row["onnx"], row["vnnlib"]): row["consensus"].strip()
                for row in reader}


def resolve(root: Path, name: str) -> Path:
    """The file of an instance path, with ``.gz`` added when only that exists."""
    path = root / name
    if not path.exists() and (root / (name + ".gz")).exists():
        return root / (name + ".gz")
    return path


def result_name(instance: Instance) -> str:
    onnx, vnnlib = instance.key
    stem = f"{Path(onnx).stem}__{Path(vnnlib).stem}"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in stem) + ".txt"


def run_instance(instance: Instance, root: Path, out: Path, scale: float,
                 verify_args: Sequence[str] = ()) -> Outcome:
    """One instance in its own process (see the module doc)."""
    timeout = instance.timeout * scale
    results = out / result_name(instance)
    from nobound.cli.verify import competition_command

    command = [sys.executable, "-m", "nobound", *competition_command(
        str(resolve(root, instance.onnx)), str(resolve(root, instance.vnnlib)), timeout,
        str(results), tuple(verify_args))]
    start = time.perf_counter()
    killed = failed = False
    try:
        completed = subprocess.run(command, capture_output=True, text=True,
                                   timeout=timeout + HARD_KILL_GRACE, check=False)
        failed = completed.returncode != 0
    except subprocess.TimeoutExpired:
        killed = True
    seconds = time.perf_counter() - start
    verdict, _ = read_result(results)
    if verdict == "missing" and (killed or failed):
        # killed from outside counts as the competition counts it: a timeout
        verdict = "timeout" if killed else "error"
    return Outcome(instance, verdict, seconds)


def read_ledger(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {instance_key(row["onnx"], row["vnnlib"]): row
                for row in csv.DictReader(handle)}


def run_benchmark(instances: Sequence[Instance], root: Path, out: Path, scale: float = 1.0,
                  consensus: dict[tuple[str, str], str] | None = None,
                  verify_args: Sequence[str] = (),
                  progress: Callable[[str], None] = print) -> list[Outcome]:
    """Run (or resume) ``instances``; one progress line per instance, ledger kept on disk."""
    out.mkdir(parents=True, exist_ok=True)
    ledger_path = out / "results.csv"
    done = read_ledger(ledger_path)
    consensus = consensus or {}
    new_file = not ledger_path.is_file()
    outcomes = []
    with open(ledger_path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, LEDGER_FIELDS)
        if new_file:
            writer.writeheader()
        for number, instance in enumerate(instances, start=1):
            expected = consensus.get(instance.key, "")
            if instance.key in done:
                row = done[instance.key]
                outcome = Outcome(instance, row["verdict"], float(row["seconds"]), expected)
                status = "resumed"
            else:
                outcome = run_instance(instance, root, out, scale, verify_args)
                outcome.consensus = expected
                writer.writerow({"onnx": instance.onnx, "vnnlib": instance.vnnlib,
                                 "timeout_s": f"{instance.timeout * scale:g}",
                                 "verdict": outcome.verdict,
                                 "seconds": f"{outcome.seconds:.3f}",
                                 "consensus": expected, "agreement": outcome.agreement})
                handle.flush()
                status = "ran"
            outcomes.append(outcome)
            onnx, vnnlib = instance.key
            note = f" (consensus {expected}: {outcome.agreement})" if expected else ""
            progress(f"[{number}/{len(instances)}] {Path(onnx).name} {Path(vnnlib).name}: "
                     f"{outcome.verdict} in {outcome.seconds:.1f} s"
                     f"{' (resumed)' if status == 'resumed' else ''}{note}")
    return outcomes


def summary_table(outcomes: Sequence[Outcome]) -> str:
    """Verdict counts, agreement with the consensus, and every contradiction by name."""
    verdicts = Counter(o.verdict for o in outcomes)
    lines = ["verdict    instances", "---------  ---------"]
    lines += [f"{v:<9}  {verdicts[v]:>9}" for v in
              ("sat", "unsat", "timeout", "unknown", "error", "missing", "invalid")
              if verdicts[v]]
    lines.append(f"{'total':<9}  {len(outcomes):>9}")
    with_consensus = [o for o in outcomes if o.consensus]
    if with_consensus:
        agreements = Counter(o.agreement for o in with_consensus)
        lines.append("")
        lines.append(f"against the consensus ({len(with_consensus)} instances): "
                     f"{agreements['agree']} agree, {agreements['CONTRADICTION']} "
                     f"contradict, {agreements['new']} decided where no tool did, "
                     f"{agreements['undecided']} undecided")
        for o in with_consensus:
            if o.agreement == "CONTRADICTION":
                lines.append(f"CONTRADICTION: {o.instance.onnx} {o.instance.vnnlib}: ours "
                             f"{o.verdict}, consensus {o.consensus}")
    return "\n".join(lines)
