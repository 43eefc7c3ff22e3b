import pytest

from nobound.cli import main

pytest.importorskip("matplotlib")


def test_figures_command_writes_pngs(tmp_path):
    assert main(["figures", "--out", str(tmp_path)]) == 0
    for name in ("relu_relaxations.png", "toy_landscapes.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_landscape_rejects_unknown_relaxation_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["landscape", "--model", str(tmp_path / "missing.h5"), "--eps", "0.1",
                   "--relaxations", "magic", "--out", str(out)])
    assert status == 2 and not out.exists()
    assert "magic" in capsys.readouterr().err
