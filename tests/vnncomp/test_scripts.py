"""The three competition scripts in vnncomp_scripts/, run as the competition runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnx")

from nobound.vnncomp.result_file import read_result  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[2] / "vnncomp_scripts"


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NOBOUND_PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True,
                          text=True, env=env, check=False, timeout=300)


def test_install_prepare_and_run_an_instance(instances, tmp_path) -> None:
    installed = script("install_tool.sh", "v1")
    assert installed.returncode == 0, installed.stderr
    net, spec = str(instances["net.onnx"]), str(instances["sat.vnnlib"])
    prepared = script("prepare_instance.sh", "v1", "test", net, spec)
    assert prepared.returncode == 0, prepared.stderr
    out = tmp_path / "out.txt"
    ran = script("run_instance.sh", "v1", "test", net, spec, str(out), "100")
    assert ran.returncode == 0, ran.stderr
    verdict, body = read_result(out)
    assert verdict == "sat" and body.startswith("((X_0 ")


def test_scripts_refuse_bad_arguments(tmp_path) -> None:
    assert script("install_tool.sh", "v2").returncode == 1
    assert script("prepare_instance.sh", "v1", "c", str(tmp_path / "none.onnx"),
                  str(tmp_path / "none.vnnlib")).returncode == 1
    assert script("run_instance.sh", "v1", "too", "few").returncode == 1
