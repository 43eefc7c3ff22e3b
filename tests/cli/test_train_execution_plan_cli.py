"""`nobound train`'s execution-plan flags: stored with the run's trainer settings (the one
place the plan is decided from), checked before anything is written, kept on --resume; a
run stored before the plan held the population settings (they were method options) still
resumes, and trains as the same settings given as plan flags."""

from __future__ import annotations

import json

import numpy as np

from nobound.cli import main
from nobound.io.checkpoint import load_checkpoint

TINY = ["--dataset", "fashion-mnist-embedded", "--arch", "cnn3_tiny", "--limit", "32",
        "--batch-size", "16", "--eval-limit", "0", "--quiet", "--epochs", "1",
        "--lr", "0.01", "--eps", "0.02"]
RGS = ["--method", "rgs", "--relaxation", "deeppoly", "--population-size", "2",
       "--sigma", "0.01"]


def fails_cleanly(capsys, argv, message, out):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_the_plan_flags_are_stored_as_the_runs_trainer_settings(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *RGS, *TINY, "--population-workers", "1",
                 "--bound-memory", "2.5", "--bound-patches", "never"]) == 0
    config = json.loads((out / "config.json").read_text())
    trainer = config["trainer"]
    assert (trainer["population_workers"], trainer["bound_memory"],
            trainer["bound_patches"]) == (1, 2.5, "never")
    assert "workers" not in config["run"]["method_options"]  # not the method's any more
    stored = load_checkpoint(out / "model.h5")
    assert stored.config["trainer"]["bound_patches"] == "never"
    assert stored.method["options"]["workers"] is None


def test_an_impossible_plan_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    fails_cleanly(capsys, ["train", "--out", str(out), "--method", "pgpe",
                           "--population-size", "4", "--population-chunk", "3", *TINY],
                  "population chunk must be even", out)
    fails_cleanly(capsys, ["train", "--out", str(out), *RGS, "--bound-memory", "0", *TINY],
                  "--bound-memory must be positive", out)
    fails_cleanly(capsys, ["train", "--out", str(out), *RGS, "--population-workers", "0",
                           *TINY], "--population-workers must be positive", out)


def test_resume_refuses_a_different_plan_flag(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *RGS, *TINY, "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--bound-patches", "never"]) == 2
    assert "--bound-patches never (stored: auto)" in capsys.readouterr().err


def test_a_run_stored_with_population_workers_as_a_method_option_resumes(tmp_path):
    """Before the run-wide plan, --population-workers was stored in the method's options;
    such a run (here its config.json, before the first checkpoint) resumes and trains as
    the new form of the same run bit for bit."""
    new, old = tmp_path / "new", tmp_path / "old"
    assert main(["train", "--out", str(new), *RGS, *TINY, "--population-workers", "1"]) == 0
    config = json.loads((new / "config.json").read_text())
    for key in ("population_workers", "population_chunk", "population_memory",
                "bound_memory", "bound_patches"):
        del config["trainer"][key]
    config["run"]["method_options"]["workers"] = 1
    old.mkdir()
    (old / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(old), "--resume", "--quiet"]) == 0
    trained = [load_checkpoint(run / "model.h5").model.state_dict() for run in (new, old)]
    for key, value in trained[0].items():
        np.testing.assert_array_equal(trained[1][key], value, err_msg=key)
