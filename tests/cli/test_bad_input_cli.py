"""Bad input to certify, evaluate and verify: one line naming the problem, exit 2, nothing
written — and no half-written file that blocks the next, correct run."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.cli import main

DATASET = "fashion-mnist-embedded"


def save(path, classes: int = 10, shape: tuple[int, ...] = (1, 28, 28)):
    from nobound.io import describe_model, save_checkpoint
    from nobound.nn import build_model, initialise

    model = build_model("cnn3_tiny", shape, classes)
    initialise(model, "kaiming", seed=0)
    save_checkpoint(path, model, architecture=describe_model(model, shape, classes,
                                                             "cnn3_tiny"),
                    config={"run": {"dataset": DATASET}})
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {"good": save(root / "good.h5"), "classes": save(root / "five.h5", classes=5),
            "shape": save(root / "cifar.h5", shape=(3, 32, 32))}


def fails_cleanly(argv: list[str], capsys, *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


def certify_argv(model, out, *extra: str) -> list[str]:
    return ["certify", "--model", str(model), "--n", "2", "--timeout", "2", "--methods", "ibp",
            "--attack-steps", "2", "--attack-restarts", "1", "--max-nodes", "4", "--no-bab",
            "--out", str(out), "--quiet", *extra]


@pytest.mark.parametrize("eps", ["nan", "inf", "-0.1"])
def test_certify_and_evaluate_refuse_a_bad_eps(checkpoints, tmp_path, capsys, eps) -> None:
    out = tmp_path / "out"
    fails_cleanly(certify_argv(checkpoints["good"], out, "--eps", eps), capsys, "--eps")
    fails_cleanly(["evaluate", "--model", str(checkpoints["good"]), "--n", "2", "--eps", eps,
                   "--out", str(out), "--quiet"], capsys, "--eps")
    assert not out.exists()


def test_mismatched_checkpoint_writes_nothing_and_the_next_run_works(checkpoints, tmp_path,
                                                                     capsys) -> None:
    out = tmp_path / "out"
    fails_cleanly(certify_argv(checkpoints["classes"], out, "--eps", "0.01"), capsys,
                  "5 outputs", "10 classes")
    fails_cleanly(certify_argv(checkpoints["shape"], out, "--eps", "0.01"), capsys,
                  "input shape")
    fails_cleanly(["evaluate", "--model", str(checkpoints["classes"]), "--n", "2", "--eps",
                   "0.01", "--out", str(out), "--quiet"], capsys, "5 outputs")
    fails_cleanly(["evaluate", "--model", str(checkpoints["shape"]), "--n", "2", "--eps",
                   "0.01", "--out", str(out), "--quiet"], capsys, "input shape")
    assert not out.exists() or not any(out.iterdir())
    assert main(certify_argv(checkpoints["good"], out, "--eps", "0.01")) == 0
    assert (out / f"certify-{DATASET}-eps0.01.jsonl").read_text().count("\n") == 3


def test_certify_refuses_more_samples_than_the_split_and_empty_methods(checkpoints, tmp_path,
                                                                       capsys) -> None:
    out = tmp_path / "out"
    argv = certify_argv(checkpoints["good"], out, "--eps", "0.01")
    fails_cleanly(argv[:3] + ["--n", "100000"] + argv[5:], capsys, "--n 100000")
    methods = argv.index("--methods") + 1
    fails_cleanly(argv[:methods] + [""] + argv[methods + 1:], capsys, "--methods")
    fails_cleanly(argv[:methods] + [" , "] + argv[methods + 1:], capsys, "--methods")
    assert not out.exists()


def test_an_interrupted_first_sample_leaves_no_header_behind(checkpoints, tmp_path,
                                                             monkeypatch) -> None:
    from nobound.certify import batched

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(batched, "certify_batch", boom)
    out = tmp_path / "out"
    assert main(certify_argv(checkpoints["good"], out, "--eps", "0.01")) == 130
    assert not (out / f"certify-{DATASET}-eps0.01.jsonl").exists()


VNNLIB = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 -0.5))
(assert (<= X_0 0.5))
(assert (>= X_1 -0.5))
(assert (<= X_1 {upper}))
(assert (>= X_2 -0.5))
(assert (<= X_2 0.5))
(assert (<= (- Y_0 Y_1) {threshold}))
"""


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    pytest.importorskip("onnx")
    from nobound.io.onnx_export import export_onnx
    from nobound.nn import Linear, ReLU, Sequential

    model = Sequential(Linear(3, 4, dtype=np.float64), ReLU(), Linear(4, 2, dtype=np.float64))
    for parameter in model.parameters():
        parameter.data = np.random.default_rng(0).standard_normal(parameter.shape)
    path = tmp_path_factory.mktemp("net") / "net.onnx"
    export_onnx(model.eval(), path, (3,))
    return path


def test_verify_refuses_truncated_onnx_and_nan_constants(onnx_file, tmp_path, capsys) -> None:
    good = tmp_path / "p.vnnlib"
    good.write_text(VNNLIB.format(upper="0.5", threshold="0.0"))
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(onnx_file.read_bytes()[: len(onnx_file.read_bytes()) // 2])
    fails_cleanly(["verify", str(truncated), str(good)], capsys, "cut.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a protobuf at all\xff\xff")
    fails_cleanly(["verify", str(garbage), str(good)], capsys, "garbage.onnx")
    for upper, threshold in (("nan", "0.0"), ("0.5", "nan"), ("0.5", "inf")):
        bad = tmp_path / "bad.vnnlib"
        bad.write_text(VNNLIB.format(upper=upper, threshold=threshold))
        fails_cleanly(["verify", str(onnx_file), str(bad)], capsys, "not a finite number")
