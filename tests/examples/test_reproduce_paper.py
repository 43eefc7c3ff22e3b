"""examples/reproduce_paper.py: the commands it runs and how it treats a CPU-budget row."""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "reproduce_paper.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("reproduce_paper", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def arguments() -> argparse.Namespace:
    """The script's defaults, as main() would parse them."""
    return argparse.Namespace(data_dir="data", seed=0, lr=5e-4, smoke=False, cpu_epochs=None,
                              certify_n=10000, timeout=10.0)


def test_every_certified_row_names_its_relaxation(script, capsys, tmp_path):
    assert script.main(["--print-commands", "--out", str(tmp_path)]) == 0
    commands = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("nobound train")]
    assert len(commands) == len(script.ROWS)
    for row, command in zip(script.ROWS, commands, strict=True):
        assert f"--method {row.method}" in command
        if row.method in ("grad", "rgs", "pgpe"):
            assert f"--relaxation {row.relaxation}" in command
        if row.cpu_epochs:
            assert f"--stop-after-epochs {row.cpu_epochs}" in command


def test_a_cpu_budget_row_certifies_its_newest_checkpoint(script, tmp_path):
    row = script.Row("partial", "cnn3", "grad", "deeppoly", "paper-mnist-0.1", cpu_epochs=2)
    args = arguments()
    run = tmp_path / "partial"
    assert script.trained_model(row, args, tmp_path) is None
    run.mkdir()
    (run / "checkpoint-00000010.h5").write_text("")
    (run / "checkpoint-00000020.h5").write_text("")
    epoch = json.dumps({"event": "epoch"})
    (run / "log.jsonl").write_text(epoch + "\n")
    assert script.trained_model(row, args, tmp_path) is None  # 1 of its 2 epochs
    (run / "log.jsonl").write_text(epoch + "\n" + epoch + "\n")
    assert script.trained_model(row, args, tmp_path) == run / "checkpoint-00000020.h5"
    assert script.certify_dir(row, args, tmp_path) == run / "certify-epoch2"
    command = script.certify_command(row, args, tmp_path)
    assert str(run / "checkpoint-00000020.h5") in command
    assert command[command.index("--out") + 1] == str(run / "certify-epoch2")
    (run / "model.h5").write_text("")  # a later session finished the schedule
    assert script.trained_model(row, args, tmp_path) == run / "model.h5"
    assert script.certify_dir(row, args, tmp_path) == run


def test_resume_keeps_the_cpu_budget(script, tmp_path):
    row = script.Row("partial", "cnn3", "grad", "deeppoly", "paper-mnist-0.1", cpu_epochs=3)
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "checkpoint-00000001.h5").write_text("")
    command = script.train_command(row, arguments(), tmp_path)
    assert "--resume" in command and command[-2:] == ["--stop-after-epochs", "3"]
