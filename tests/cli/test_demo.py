"""`nobound demo`: four certified trainings (GRAD/RGS × IBP/DeepPoly), each certified by the
complete certifier; the table, the JSON, the picture and one progress line per phase."""

from __future__ import annotations

import json

from nobound.cli import main


def test_demo_trains_four_cells_and_certifies_each(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--limit", "50", "--n", "6",
                 "--timeout", "0.5"]) == 0
    captured = capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    cells = {(r["method"], r["relaxation"]) for r in results["networks"]}
    assert cells == {("grad", "ibp"), ("grad", "deeppoly"), ("rgs", "ibp"),
                     ("rgs", "deeppoly")}
    for network in results["networks"]:
        assert network["n"] == 6
        # a certified sample is robust, so no attack breaks it; an attack starts from x
        assert network["certified_accuracy"] <= network["adversarial_accuracy"] <= \
            network["natural_accuracy"]
        assert sum(network["verdicts"].values()) == 6
        cell = out / f"{network['method']}-{network['relaxation']}"
        assert (cell / "model.h5").is_file() and (cell / "log.jsonl").is_file()
    assert (out / "training.png").stat().st_size > 0
    assert "DeepPoly-RGS" in (out / "results.md").read_text()
    assert "certified %" in captured.out
    assert captured.err.count("[demo]") >= 12  # train, certify, result per cell
