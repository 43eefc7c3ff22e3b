"""`nobound train | evaluate | demo`: bad input fails on one line and writes nothing; a tiny
end-to-end run on the embedded dataset works, and CLI resume is bit-for-bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nobound.cli import main
from nobound.io.architecture import describe_model
from nobound.io.checkpoint import load_checkpoint, save_checkpoint
from nobound.nn import build_model

TINY = ["--dataset", "fashion-mnist-embedded", "--limit", "120", "--epochs", "1",
        "--batch-size", "40", "--eval-limit", "60", "--quiet", "--lr", "5e-3"]


def fails_cleanly(capsys, argv, message, *unwritten):
    """Exit status 2, one stderr line naming the problem, none of ``unwritten`` created."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    for path in unwritten:
        assert not path.exists(), path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--arch", "cnn3", "--method", "pgd", "--eps", "0.02",
                 "--attack-steps", "2", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_run_directory(trained_run):
    assert (trained_run / "model.h5").is_file() and (trained_run / "config.json").is_file()
    config = json.loads((trained_run / "config.json").read_text())
    assert config["run"]["method_options"] == {"steps": 2, "restarts": 1, "step_size": 0.2}
    records = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["event"] == "epoch"][0]
    assert 0.0 <= epoch["test_accuracy"] <= 1.0 and epoch["train_eps"] == pytest.approx(0.02)
    checkpoint = load_checkpoint(trained_run / "model.h5")
    assert checkpoint.method["name"] == "pgd" and checkpoint.counters["step"] == 3
    assert checkpoint.architecture["name"] == "cnn3"


def test_evaluate_writes_json_and_markdown(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(trained_run / "model.h5"), "--n", "30", "--eps", "0.05",
            "--steps", "3", "--restarts", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "evaluation-fashion-mnist-embedded-eps0.05.json").read_text())
    assert result["n"] == 30 and result["dataset"] == "fashion-mnist-embedded"
    assert 0.0 <= result["adversarial_accuracy"] <= result["natural_accuracy"] <= 1.0
    assert result["attack"]["steps"] == 3
    markdown = (out / "evaluation-fashion-mnist-embedded-eps0.05.md").read_text()
    assert "| model.h5 | fashion-mnist-embedded | 30 | 0.05 |" in markdown
    assert markdown.splitlines()[0] in printed


def test_cli_resume_is_bit_for_bit(tmp_path, capsys):
    common = ["--arch", "cnn3_tiny", "--method", "standard", *TINY, "--epochs", "2"]
    assert main(["train", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), *common, "--max-steps", "4"]) == 0
    assert "--resume" in capsys.readouterr().out
    assert not (tmp_path / "b" / "model.h5").exists()
    # The resumed run takes its configuration from the checkpoint; a flag that would change
    # it is refused, not silently ignored.
    fails_cleanly(capsys, ["train", "--out", str(tmp_path / "b"), "--resume", "--quiet",
                           "--epochs", "9"], "--epochs 9 (stored: 2)")
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--quiet"]) == 0
    first = load_checkpoint(tmp_path / "a" / "model.h5").model.state_dict()
    second = load_checkpoint(tmp_path / "b" / "model.h5").model.state_dict()
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_stop_after_epochs_keeps_the_full_schedule(tmp_path, capsys):
    # Part of a long schedule: the run stops at the end of epoch 1 of 2 with a checkpoint of
    # that epoch, and --resume finishes it exactly as an uninterrupted run.
    common = ["--arch", "cnn3_tiny", "--method", "standard", *TINY, "--epochs", "2",
              "--lr-milestones", "1"]
    assert main(["train", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), *common,
                 "--stop-after-epochs", "1"]) == 0
    assert "--resume" in capsys.readouterr().out
    assert not (tmp_path / "b" / "model.h5").exists()
    records = [json.loads(line) for line in
               (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [0]
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--quiet"]) == 0
    first = load_checkpoint(tmp_path / "a" / "model.h5").model.state_dict()
    second = load_checkpoint(tmp_path / "b" / "model.h5").model.state_dict()
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_train_rejects_bad_input_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    fails_cleanly(capsys, ["train", "--arch", "resnet9000", "--out", str(out), *TINY],
                  "unknown architecture 'resnet9000'", out)
    fails_cleanly(capsys, ["train", "--eps", "-0.1", "--out", str(out), *TINY],
                  "--eps must be non-negative", out)
    fails_cleanly(capsys, ["train", "--method", "magic", "--out", str(out), *TINY],
                  "unknown training method 'magic'", out)
    fails_cleanly(capsys, ["train", "--stop-after-epochs", "0", "--out", str(out), *TINY],
                  "--stop-after-epochs must be positive", out)
    fails_cleanly(capsys, ["train", "--micro-batch", "-4", "--out", str(out), *TINY],
                  "--micro-batch must be non-negative", out)
    fails_cleanly(capsys, ["train", "--micro-batch", "4", "--micro-batch-workers", "0",
                           "--out", str(out), *TINY], "--micro-batch-workers must be positive",
                  out)
    fails_cleanly(capsys, ["train", "--method", "pgpe", "--micro-batch", "4", "--out",
                           str(out), *TINY], "--micro-batch does not apply to --method pgpe",
                  out)
    fails_cleanly(capsys, ["train", "--dataset", "mnist", "--data-dir",
                           str(tmp_path / "nowhere"), "--out", str(out)],
                  f"data directory {tmp_path / 'nowhere'} does not exist", out)
    fails_cleanly(capsys, ["train", "--dataset", "mnist", "--data-dir", str(tmp_path),
                           "--out", str(out)], "dataset 'mnist' not found", out)
    out.mkdir()
    (out / "something").write_text("x")
    fails_cleanly(capsys, ["train", "--out", str(out), *TINY], "is not empty; pass --resume")


def test_evaluate_rejects_bad_input_and_writes_nothing(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    model = str(trained_run / "model.h5")
    fails_cleanly(capsys, ["evaluate", "--model", model, "--eps", "-1", "--out", str(out)],
                  "--eps must be non-negative", out)
    corrupted = tmp_path / "corrupted.h5"
    data = (trained_run / "model.h5").read_bytes()
    corrupted.write_bytes(data[:len(data) // 3])
    fails_cleanly(capsys, ["evaluate", "--model", str(corrupted), "--out", str(out)],
                  f"{corrupted}: not a readable HDF5 file", out)
    cifar_shaped = tmp_path / "cifar.h5"
    network = build_model("cnn3", (3, 32, 32), 10)
    save_checkpoint(cifar_shaped, network,
                    architecture=describe_model(network, (3, 32, 32), 10, "cnn3"))
    fails_cleanly(capsys, ["evaluate", "--model", str(cifar_shaped), "--dataset",
                           "fashion-mnist-embedded", "--out", str(out)],
                  "wrong input shape", out)
    fails_cleanly(capsys, ["evaluate", "--model", str(cifar_shaped), "--out", str(out)],
                  "does not record its dataset; pass --dataset", out)


@pytest.mark.parametrize("command", ["train", "evaluate", "demo"])
def test_help_explains_each_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"nobound {command}" in text and "--out" in text
