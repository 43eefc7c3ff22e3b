"""``nobound verify --results-file``: every outcome written in the competition's format,
exit 0, no stale file, the timeout kept from process start."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("onnx")
from onnx.reference import ReferenceEvaluator  # noqa: E402

from nobound.cli import main  # noqa: E402
from nobound.io.vnnlib import read_vnnlib  # noqa: E402
from nobound.vnncomp.deadline import TimedOut, process_start_time, run_until  # noqa: E402
from nobound.vnncomp.result_file import ResultFile, read_result  # noqa: E402

# seconds `python -m nobound --version` takes on a machine whose cores are free
NOMINAL_START_UP = 0.5


def parse_counterexample(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in
            (item.strip("() \n").split() for item in text.strip().splitlines())}


def test_unsat_sat_and_error_are_written_with_exit_0(instances, tmp_path) -> None:
    out = tmp_path / "result.txt"
    assert main(["verify", str(instances["net.onnx"]), str(instances["unsat.vnnlib"]),
                 "--timeout", "120", "--results-file", str(out)]) == 0
    assert read_result(out) == ("unsat", "")

    assert main(["verify", str(instances["net_gz.onnx.gz"]), str(instances["sat.vnnlib.gz"]),
                 "--timeout", "120", "--results-file", str(out)]) == 0
    verdict, body = read_result(out)
    assert verdict == "sat"
    values = parse_counterexample(body)
    x = np.array([values[f"X_{i}"] for i in range(3)], np.float32)
    # the counterexample replays in the file's own arithmetic, as the competition checks
    from tests.vnncomp.conftest import small_network

    y = ReferenceEvaluator(small_network()).run(None, {"x": x.reshape(1, 1, 1, 3)})[0][0]
    np.testing.assert_allclose([values["Y_0"], values["Y_1"]], y, rtol=1e-6)
    disjunct = read_vnnlib(instances["sat.vnnlib"]).disjuncts[0]
    assert np.all(disjunct.spec @ y + disjunct.offset <= 0)
    assert np.all(np.abs(x) <= 1.0)

    assert main(["verify", str(instances["net.onnx"]), str(instances["broken.vnnlib"]),
                 "--results-file", str(out)]) == 0
    verdict, body = read_result(out)
    assert verdict == "error" and "line" in body


def test_unsupported_network_is_an_error_verdict_and_flags_stay_usage_errors(
        instances, tmp_path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Sin", ["x"], ["y"], name="wave")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    net = tmp_path / "sin.onnx"
    net.write_bytes(helper.make_model(graph).SerializeToString())
    out = tmp_path / "result.txt"
    assert main(["verify", str(net), str(instances["unsat.vnnlib"]), "--results-file",
                 str(out)]) == 0
    verdict, body = read_result(out)
    assert verdict == "error" and "'wave' (Sin)" in body
    assert main(["verify", str(net), str(instances["unsat.vnnlib"]), "--timeout", "-1",
                 "--results-file", str(out)]) == 2


def test_a_stale_result_file_is_removed_first(tmp_path) -> None:
    stale = tmp_path / "result.txt"
    stale.write_text("unsat\n")
    ResultFile(stale)
    assert read_result(stale) == ("missing", "")
    results = ResultFile(stale)
    assert results.write("timeout") and not results.write("unsat")
    assert read_result(stale) == ("timeout", "")


def test_timeout_is_kept_from_process_start(instances, tmp_path) -> None:
    out = tmp_path / "result.txt"
    out.write_text("unsat\n")              # stale: must not survive a timeout
    timeout = 4.0
    # what the deadline cannot cover: a process start-up slower than the timeout itself
    # (on a machine whose cores are taken by other jobs), measured just before
    begin = time.time()
    subprocess.run([sys.executable, "-m", "nobound", "--version"], capture_output=True,
                   check=False)
    start_up = time.time() - begin
    start = time.time()
    completed = subprocess.run(
        [sys.executable, "-m", "nobound", "verify", str(instances["twin.onnx"]),
         str(instances["twin.vnnlib"]), "--timeout", str(timeout), "--results-file", str(out)],
        capture_output=True, text=True, check=False)
    elapsed = time.time() - start
    assert completed.returncode == 0, completed.stderr
    assert read_result(out)[0] == "timeout", completed.stderr
    # within a second on a machine that runs us (start-up ≈ 0.5 s); where other jobs take
    # the cores, the start-up itself (and exiting) can outlast the deadline
    allowed = timeout + 1.0 if start_up <= 2 * NOMINAL_START_UP else \
        timeout + 1.0 + 3 * start_up
    assert elapsed < allowed, \
        f"{elapsed:.2f} s for a {timeout} s timeout (start-up alone {start_up:.2f} s)"


def test_run_until_returns_raises_and_stops_at_the_deadline() -> None:
    assert run_until(lambda: {"a": [1, 2]}, time.time() + 30) == {"a": [1, 2]}
    with pytest.raises(RuntimeError, match="boom"):
        run_until(lambda: (_ for _ in ()).throw(ValueError("boom")), time.time() + 30)
    start = time.time()
    with pytest.raises(TimedOut):
        run_until(lambda: time.sleep(30), start + 0.5)
    assert time.time() - start < 2.0
    assert process_start_time() <= time.time()


def test_networks_bab_cannot_split_say_so(tmp_path, capsys) -> None:
    """Sigmoid and MaxPool: no branch and bound, and the summary line says why."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], transB=1),
             helper.make_node("Sigmoid", ["h"], ["s"]),
             helper.make_node("Gemm", ["s", "W2"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "sig", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.normal(size=(2, 4)).astype(np.float32), "W2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    net = tmp_path / "sig.onnx"
    net.write_bytes(model.SerializeToString())
    spec = tmp_path / "p.vnnlib"
    lines = [f"(declare-const X_{i} Real)" for i in range(3)] + \
        ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"] + \
        [f"(assert (>= X_{i} -0.1))\n(assert (<= X_{i} 0.1))" for i in range(3)] + \
        ["(assert (>= (- Y_0 Y_1) 1000.0))"]
    spec.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.txt"
    assert main(["verify", str(net), str(spec), "--timeout", "120", "--results-file",
                 str(out)]) == 0
    assert read_result(out)[0] in ("unsat", "unknown")
    assert "branch and bound splits ReLUs only" in capsys.readouterr().err


def test_in_process_calls_count_from_the_call_not_the_process_start(instances, tmp_path,
                                                                    monkeypatch) -> None:
    """A long-lived process (pytest, a notebook) calling main: its own start long ago is no
    start-up of this verification."""
    import nobound.vnncomp.deadline as deadline

    monkeypatch.setattr(deadline, "process_start_time", lambda: time.time() - 1000.0)
    out = tmp_path / "result.txt"
    assert main(["verify", str(instances["net.onnx"]), str(instances["unsat.vnnlib"]),
                 "--timeout", "120", "--results-file", str(out)]) == 0
    assert read_result(out) == ("unsat", "")
