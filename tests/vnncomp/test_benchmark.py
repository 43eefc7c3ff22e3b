"""``nobound vnncomp``: timeouts from the CSV (scaled), a progress line per instance,
resume from the ledger, the summary, and every contradiction of the consensus listed."""

from __future__ import annotations

import csv
import shutil

import pytest

pytest.importorskip("onnx")

from nobound.cli import main  # noqa: E402
from nobound.vnncomp.benchmark import (  # noqa: E402
    agreement,
    instance_key,
    read_instances,
)


def write_benchmark(folder, consensus: dict[str, str]) -> None:
    (folder / "instances.csv").write_text(
        "net.onnx,unsat.vnnlib,200\n"
        "./net_gz.onnx,sat.vnnlib,200\n"          # .gz added by the runner, as shipped
        "net.onnx,broken.vnnlib,200\n")
    with open(folder / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["onnx", "vnnlib", "timeout_s", "consensus"])
        for spec, verdict in consensus.items():
            onnx = "net_gz.onnx.gz" if spec.startswith("sat") else "net.onnx"
            writer.writerow([onnx, spec, 60, verdict])


def test_runs_resumes_and_reports_contradictions(instances, tmp_path, capsys) -> None:
    bench = tmp_path / "bench"
    shutil.copytree(instances["folder"], bench)
    # a deliberately wrong consensus for the sat instance: it must be reported
    write_benchmark(bench, {"unsat.vnnlib": "unsat", "sat.vnnlib.gz": "unsat",
                            "broken.vnnlib": "unknown"})
    out = tmp_path / "out"
    code = main(["vnncomp", str(bench / "instances.csv"), "--out", str(out),
                 "--timeout-scale", "0.5", "--consensus", str(bench / "results.csv")])
    printed = capsys.readouterr().out
    assert code == 3
    lines = printed.splitlines()
    assert lines[0].startswith("[1/3] net.onnx unsat.vnnlib: unsat")
    assert "(consensus unsat: agree)" in lines[0]
    assert lines[1].startswith("[2/3] net_gz.onnx sat.vnnlib: sat")
    assert "CONTRADICTION" in lines[1]
    assert lines[2].startswith("[3/3] net.onnx broken.vnnlib: error")
    assert "CONTRADICTION: ./net_gz.onnx sat.vnnlib: ours sat, consensus unsat" in printed
    assert "1 agree, 1 contradict" in printed
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["verdict"] for r in rows] == ["unsat", "sat", "error"]
    assert {r["timeout_s"] for r in rows} == {"100"}
    assert (out / "net__unsat.txt").read_text() == "unsat\n"

    # resume: nothing runs again, the ledger keeps one row per instance
    code = main(["vnncomp", str(bench / "instances.csv"), "--out", str(out),
                 "--consensus", str(bench / "results.csv"), "--select", "0:2"])
    printed = capsys.readouterr().out
    assert code == 3 and printed.count("(resumed)") == 2
    with open(out / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 3


def test_instances_csv_errors_name_the_line(tmp_path) -> None:
    bad = tmp_path / "instances.csv"
    bad.write_text("a.onnx,b.vnnlib,60\na.onnx,b.vnnlib,soon\n")
    with pytest.raises(ValueError, match="line 2"):
        read_instances(bad)
    assert main(["vnncomp", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert main(["vnncomp", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]) == 2


def test_agreement_and_keys() -> None:
    assert instance_key("./nets/a.onnx.gz", "specs/p.vnnlib") == ("nets/a.onnx",
                                                                  "specs/p.vnnlib")
    assert agreement("sat", "unsat") == "CONTRADICTION"
    assert agreement("unsat", "unsat") == "agree"
    assert agreement("unsat", "unknown") == "new"
    assert agreement("timeout", "sat") == "undecided"


@pytest.mark.parametrize("flags, named", [
    ("--methods nothing", "nothing"),              # verify's own check of the value
    ("--branching coin", "coin"),                  # verify's choices
    ("--no-such-flag 3", "--no-such-flag"),        # not a verify flag at all
    ("--timeout 5", "--timeout"),                  # the runner's, per instance
    ("--results-file=x", "--results-file"),
])
def test_verify_args_are_checked_by_verify_before_any_instance(tmp_path, capsys, flags,
                                                               named) -> None:
    csv_path = tmp_path / "instances.csv"
    csv_path.write_text("net.onnx,spec.vnnlib,10\n")
    out = tmp_path / "out"
    assert main(["vnncomp", str(csv_path), "--out", str(out), f"--verify-args={flags}"]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()   # nothing ran, nothing written


def test_the_runner_builds_verify_commands_verify_parses() -> None:
    import argparse

    from nobound.cli.verify import add_arguments, competition_command

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    command = competition_command("n.onnx", "s.vnnlib", 12.5, "r.txt", ["--no-bab"])
    args = parser.parse_args(command[1:])
    assert (command[0], args.onnx, args.vnnlib, args.timeout, args.results_file,
            args.no_bab) == ("verify", "n.onnx", "s.vnnlib", 12.5, "r.txt", True)
