"""``nobound certify`` (resumable table) and ``nobound verify`` (VNN-COMP answers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from certify_instances import tiny_network

from nobound.cli import main
from nobound.cli.verify import EXIT_CODES
from nobound.exact import minimise_output

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from nobound.io import describe_model, save_checkpoint
    from nobound.nn import build_model, initialise

    model = build_model("cnn3_tiny", (1, 28, 28), 10, normalize=((0.286,), (0.353,)))
    initialise(model, "kaiming", seed=0)
    path = tmp_path_factory.mktemp("run") / "model.h5"
    save_checkpoint(path, model, architecture=describe_model(model, (1, 28, 28), 10,
                                                             "cnn3_tiny"),
                    config={"run": {"dataset": "fashion-mnist-embedded"}})
    return path


def test_certify_writes_table_and_resumes(checkpoint, tmp_path, capsys) -> None:
    argv = ["certify", "--model", str(checkpoint), "--eps", "0.002", "--n", "3",
            "--timeout", "5", "--methods", "ibp,deeppoly", "--attack-steps", "5",
            "--attack-restarts", "1", "--max-nodes", "40", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    stem = "certify-fashion-mnist-embedded-eps0.002"

    def output(suffix: str):
        return tmp_path / f"{stem}{suffix}"

    result = json.loads(output(".json").read_text())
    summary, samples = result["summary"], result["samples"]
    assert summary["n"] == 3 and len(samples) == 3
    assert summary["natural_accuracy"] >= summary["adversarial_accuracy"] >= \
        summary["certified_accuracy"]
    assert {s["status"] for s in samples} <= {"certified", "falsified", "unknown"}
    assert "certified acc. (%)" in output(".md").read_text()
    lines = output(".jsonl").read_text().splitlines()
    assert len(lines) == 4  # header + 3 samples

    assert main(argv) == 0  # a rerun certifies nothing new
    assert len(output(".jsonl").read_text().splitlines()) == 4
    changed = [("7" if a == "5" and argv[i - 1] == "--timeout" else a)
               for i, a in enumerate(argv)]
    assert main(changed) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.fixture(scope="module")
def onnx_network(tmp_path_factory):
    from nobound.io.onnx_export import export_onnx

    model = tiny_network(4, (3, 6, 6, 2))
    path = tmp_path_factory.mktemp("net") / "net.onnx"
    export_onnx(model, path, (3,))
    return model, path


def property_text(threshold: float, radius: float = 0.5) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(3)]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    lines += [f"(assert (>= X_{i} {-radius}))\n(assert (<= X_{i} {radius}))" for i in range(3)]
    return "\n".join(lines) + f"\n(assert (<= (- Y_0 Y_1) {threshold!r}))\n"


def test_verify_answers_unsat_and_sat_with_counterexample(onnx_network, tmp_path,
                                                         capsys) -> None:
    model, path = onnx_network
    exact = minimise_output(model, -0.5 * np.ones(3), 0.5 * np.ones(3), np.array([1.0, -1.0]))
    unsat = tmp_path / "unsat.vnnlib"
    unsat.write_text(property_text(exact.value - 0.02))
    certificate = tmp_path / "cert.json"
    assert main(["verify", str(path), str(unsat), "--timeout", "20",
                 "--certificate", str(certificate)]) == EXIT_CODES["unsat"]
    assert capsys.readouterr().out.splitlines()[0] == "unsat"
    from nobound.certify.certificate import load_certificate
    from nobound.certify.checker import check_certificate
    from nobound.certify.problem import float64_model

    assert check_certificate(float64_model(model), load_certificate(certificate)).valid

    sat = tmp_path / "sat.vnnlib"
    sat.write_text(property_text(exact.value + 0.02))
    cex = tmp_path / "cex.txt"
    assert main(["verify", str(path), str(sat), "--counterexample", str(cex)]) == \
        EXIT_CODES["sat"]
    out = capsys.readouterr().out
    assert out.startswith("sat\n((X_0 ")
    body = out.split("\n", 1)[1].strip().splitlines()
    values = dict(item.strip("() ").split() for item in body)
    x = np.array([float(values[f"X_{i}"]) for i in range(3)])
    y = model(x[None]).data[0]
    assert y[0] - y[1] <= exact.value + 0.02 and np.all(np.abs(x) <= 0.5)
    assert cex.read_text().startswith("sat\n")


def test_verify_reports_unknown_and_input_errors(onnx_network, tmp_path, capsys) -> None:
    model, path = onnx_network
    exact = minimise_output(model, -0.5 * np.ones(3), 0.5 * np.ones(3), np.array([1.0, -1.0]))
    hard = tmp_path / "hard.vnnlib"
    hard.write_text(property_text(exact.value - 1e-4))
    code = main(["verify", str(path), str(hard), "--no-bab", "--methods", "ibp"])
    assert code == EXIT_CODES["unknown"]
    assert capsys.readouterr().out.strip() == "unknown"

    broken = tmp_path / "broken.vnnlib"
    broken.write_text(property_text(0.0).replace("(assert (<= X_2 0.5))", "(assert (<= X_2"))
    assert main(["verify", str(path), str(broken)]) == 2
    assert "line" in capsys.readouterr().err
    wrong_size = tmp_path / "wrong.vnnlib"
    wrong_size.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                          "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 0))\n")
    assert main(["verify", str(path), str(wrong_size)]) == 2
    assert "inputs" in capsys.readouterr().err


def test_search_flags_reach_the_certifier_configuration() -> None:
    """--input-branching and --intermediate-steps end up in CertifierConfig; a negative
    step count is refused with a one-line usage error."""
    import argparse

    import pytest

    from nobound.cli import UsageError
    from nobound.cli.certify import add_certifier_flags, certifier_config

    parser = argparse.ArgumentParser()
    add_certifier_flags(parser, timeout=1.0)
    config = certifier_config(parser.parse_args(["--input-branching", "gradient",
                                                 "--intermediate-steps", "0"]))
    assert config.input_branching == "gradient" and config.intermediate_steps == 0
    default = certifier_config(parser.parse_args([]))
    assert default.input_branching == "bounds" and default.intermediate_steps == 20
    with pytest.raises(UsageError, match="intermediate-steps"):
        certifier_config(parser.parse_args(["--intermediate-steps", "-1"]))
