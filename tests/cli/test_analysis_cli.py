import json

import numpy as np
import pytest

from nobound.cli import main
from nobound.io.architecture import describe_model
from nobound.io.checkpoint import save_checkpoint
from nobound.nn import build_model, kaiming_uniform


@pytest.fixture
def checkpoint(tmp_path):
    model = kaiming_uniform(build_model("cnn3_tiny", (1, 28, 28), 10), seed=0)
    path = tmp_path / "model.h5"
    save_checkpoint(path, model, architecture=describe_model(model, (1, 28, 28), 10),
                    config={"dataset": "fashion-mnist-embedded"})
    return path


def test_tightness_command_writes_json_markdown(checkpoint, tmp_path):
    out = tmp_path / "tight"
    assert main(["tightness", "--model", str(checkpoint), "--max-eps", "0.01", "--points",
                 "3", "--n", "16", "--relaxations", "ibp,hbox", "--out", str(out)]) == 0
    curves = json.loads((out / "tightness.json").read_text())
    assert [c["relaxation"] for c in curves] == ["ibp", "hbox"]
    assert curves[1]["auc"] >= curves[0]["auc"]  # HBox ⊆ IBP
    assert "| ibp |" in (out / "tightness.md").read_text()


def test_landscape_command_with_pgpe_surfaces(checkpoint, tmp_path):
    out = tmp_path / "land"
    assert main(["landscape", "--model", str(checkpoint), "--eps", "0.01", "--n", "8",
                 "--relaxations", "ibp", "--sigmas", "1e-3", "--points", "5", "--samples",
                 "4", "--population-sizes", "2,4", "--out", str(out)]) == 0
    curves = json.loads((out / "landscape.json").read_text())
    assert [c["sigma"] for c in curves] == [0.0, 1e-3]
    assert np.isclose(curves[0]["mean"][2], 1.0)
    surfaces = json.loads((out / "pgpe_surfaces.json").read_text())
    assert [s["population_size"] for s in surfaces] == [2, 4]
    assert (out / "landscape.csv").read_text().startswith("relaxation,sigma,offset")


def test_tightness_rejects_negative_radius_and_writes_nothing(checkpoint, tmp_path):
    out = tmp_path / "never"
    assert main(["tightness", "--model", str(checkpoint), "--max-eps", "-1",
                 "--out", str(out)]) == 2
    assert not out.exists()
