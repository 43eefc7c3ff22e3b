"""``train --resume`` never trains a different job: the stored configuration (checkpoint or,
before the first one, config.json) is used, conflicting flags are refused, stale
temporaries are removed and a truncated newest checkpoint falls back to an intact one."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from nobound.cli import main
from nobound.io.checkpoint import load_checkpoint

RUN = ["--arch", "cnn3_tiny", "--method", "standard", "--dataset", "fashion-mnist-embedded",
       "--limit", "80", "--epochs", "2", "--batch-size", "40", "--eval-limit", "0",
       "--lr", "5e-3", "--quiet"]


def same_weights(a, b) -> bool:
    first = load_checkpoint(a).model.state_dict()
    second = load_checkpoint(b).model.state_dict()
    return all(np.array_equal(first[k], second[k]) for k in first)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "reference"
    assert main(["train", "--out", str(out), *RUN]) == 0
    return out


def test_resume_before_the_first_checkpoint_uses_the_stored_config(reference, tmp_path,
                                                                   capsys) -> None:
    out = tmp_path / "early"
    out.mkdir()
    shutil.copy(reference / "config.json", out / "config.json")
    stored = (out / "config.json").read_bytes()
    # the CLI defaults (cnn3, 3 epochs, …) would be a different job
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    assert "from its config.json" in capsys.readouterr().err
    assert (out / "config.json").read_bytes() == stored
    assert same_weights(reference / "model.h5", out / "model.h5")


def test_stale_temporaries_and_a_truncated_newest_checkpoint(reference, tmp_path,
                                                             capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *RUN, "--checkpoint-every", "1",
                 "--keep-checkpoints", "0", "--max-steps", "3"]) == 0
    checkpoints = sorted(out.glob("checkpoint-*.h5"))
    assert len(checkpoints) >= 2
    newest = checkpoints[-1]
    newest.write_bytes(newest.read_bytes()[:200])  # truncated
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = out / f".checkpoint-00000009.h5.{dead}.tmp"
    stale.write_bytes(b"half a checkpoint")
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert not stale.exists() and "removed" in err
    assert "newest intact checkpoint" in err and checkpoints[-2].name in err
    assert (out / (newest.name + ".corrupt")).exists()
    assert same_weights(reference / "model.h5", out / "model.h5")


def test_resume_refuses_conflicting_flags_and_bad_values(reference, tmp_path, capsys) -> None:
    out = tmp_path / "stopped"
    assert main(["train", "--out", str(out), *RUN, "--max-steps", "1"]) == 0
    before = sorted(p.name for p in out.iterdir())
    for flag, value in (("--lr", "0.1"), ("--arch", "cnn3"), ("--batch-size", "8"),
                        ("--dataset", "mnist")):
        assert main(["train", "--out", str(out), "--resume", flag, value]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "conflict" in err and flag in err, err
    assert sorted(p.name for p in out.iterdir()) == before
    fresh = tmp_path / "fresh"
    for flags, message in ((["--limit", "0"], "--limit must be positive"),
                           (["--grad-clip", "nan"], "--grad-clip"),
                           (["--eps", "nan"], "--eps"), (["--lr", "inf"], "--lr")):
        assert main(["train", "--out", str(fresh), *RUN, *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not fresh.exists()
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert main(["train", "--out", str(empty), "--resume", "--quiet"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
