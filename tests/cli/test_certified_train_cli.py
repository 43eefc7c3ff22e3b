"""`nobound train` with the certified methods: eps ramp, presets, warm start, PGPE resume
bit-for-bit (population noise included), and `nobound plot-training` on the log."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nobound.cli import main
from nobound.io.checkpoint import load_checkpoint

TINY = ["--dataset", "fashion-mnist-embedded", "--arch", "cnn3_tiny", "--limit", "48",
        "--batch-size", "16", "--eval-limit", "0", "--quiet", "--log-every", "1"]


def test_pgpe_with_eps_ramp_resumes_bit_for_bit(tmp_path, capsys):
    common = ["--method", "pgpe", "--relaxation", "crown-ibp", "--population-size", "4",
              "--sigma", "0.01", "--lr", "0.01", "--eps", "0.05", "--eps-ramp", "smoothed",
              "--eps-ramp-epochs", "1", "--epochs", "2", *TINY]
    assert main(["train", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), *common, "--max-steps", "4"]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--quiet"]) == 0
    first = load_checkpoint(tmp_path / "a" / "model.h5")
    second = load_checkpoint(tmp_path / "b" / "model.h5")
    state_a, state_b = first.model.state_dict(), second.model.state_dict()
    assert all(np.array_equal(state_a[k], state_b[k]) for k in state_a)
    assert np.array_equal(first.method_state["sigma"], second.method_state["sigma"])
    records = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text()
               .splitlines()]
    eps = [r["eps"] for r in records if r["event"] == "step"]
    assert eps[0] == 0.0 and eps[-1] == pytest.approx(0.05)
    assert all(b >= a for a, b in zip(eps, eps[1:], strict=False))
    assert all("sigma" in r and "certified_accuracy" in r for r in records
               if r["event"] == "step")
    assert main(["plot-training", str(tmp_path / "a"), "--out",
                 str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_preset_and_warm_start(tmp_path, capsys):
    warm = tmp_path / "pgd"
    assert main(["train", "--out", str(warm), "--method", "pgd", "--attack-steps", "1",
                 "--eps", "0.05", "--epochs", "1", *TINY]) == 0
    out = tmp_path / "rgs"
    assert main(["train", "--out", str(out), "--preset", "paper-mnist-0.1",
                 "--method", "rgs", "--relaxation", "deeppoly", "--epochs", "1",
                 "--max-steps", "1", "--init-from", str(warm / "model.h5"), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["trainer"]["lr"] == 5e-5 and config["trainer"]["grad_clip"] == 10.0
    assert config["run"]["method_options"]["sigma"] == 1e-3
    assert config["run"]["method_options"]["sigma_milestones"] == [50, 60]
    assert config["run"]["eps_schedule"]["length_epochs"] == 20
    assert config["run"]["dataset"] == "fashion-mnist-embedded"  # the flag beats the preset
    # warm start: step 0 begins from the PGD weights (one RGS step at lr 5e-5 moves little)
    start = load_checkpoint(warm / "model.h5").model.state_dict()
    after = load_checkpoint(sorted(out.glob("checkpoint-*.h5"))[-1]).model.state_dict()
    assert all(np.abs(start[k] - after[k]).max() < 1e-3 for k in start)
    assert main(["train", "--out", str(tmp_path / "bad"), "--preset", "paper-mnist-9",
                 *TINY]) == 2
