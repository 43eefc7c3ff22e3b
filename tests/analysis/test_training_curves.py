"""Reading training curves from a JSON-lines log (and drawing them)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nobound.analysis.training_curves import plot_training_curves, read_training_log


def write_log(path, records, broken_tail=False):
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(text + ('{"event": "step", "lo' if broken_tail else ""))


def test_series_follow_the_step_records_with_nan_for_missing_metrics(tmp_path):
    log = tmp_path / "log.jsonl"
    write_log(log, [
        {"event": "start", "step": 0},
        {"event": "step", "step": 1, "loss": 2.0, "eps": 0.0, "accuracy": 0.1},
        {"event": "step", "step": 2, "loss": 1.5, "eps": 0.05, "accuracy": 0.2,
         "sigma": 1e-3, "certified_accuracy": 0.0},
        {"event": "epoch", "step": 2, "train_loss": 1.75, "test_accuracy": 0.3},
    ], broken_tail=True)
    series = read_training_log(log)
    np.testing.assert_array_equal(series["step"]["step"], [1, 2])
    np.testing.assert_array_equal(series["step"]["loss"], [2.0, 1.5])
    assert np.isnan(series["step"]["sigma"][0]) and series["step"]["sigma"][1] == 1e-3
    assert series["epoch"]["test_accuracy"].tolist() == [0.3]


def test_plot_needs_step_records(tmp_path):
    pytest.importorskip("matplotlib")
    log = tmp_path / "log.jsonl"
    write_log(log, [{"event": "start", "step": 0}])
    with pytest.raises(ValueError):
        plot_training_curves(log, tmp_path / "out.png")
    write_log(log, [{"event": "step", "step": s, "loss": 1.0 / s, "eps": 0.01 * s,
                     "accuracy": 0.5, "lr": 1e-3} for s in range(1, 5)])
    written = plot_training_curves(log, tmp_path / "out.png")
    assert written.stat().st_size > 1000
