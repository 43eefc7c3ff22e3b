"""benchmarks/gpu_check.sh and gpu_rows.py, as far as they run without a GPU: the script
stops at once, naming the problem, when CuPy cannot run; the Python parts run on the CPU
guard for CuPy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_script_stops_at_once_when_the_array_library_cannot_run(tmp_path):
    broken = tmp_path / "site" / "cupy"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('libcudart.so.12: not found')\n")
    out = tmp_path / "out"
    env = {**os.environ, "NOBOUND_GPU_OUT": str(out), "PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "CuPy cannot run: import cupy failed: ImportError: libcudart.so.12" in done.stderr
    assert "stopped: CuPy cannot run" in (out / "gpu_check.log").read_text()
    assert not (out / "smoke.log").exists()  # nothing else ran


def test_the_gpu_rows_run_on_the_guard(tmp_path):
    for part in ("smoke", "bounds", "pgpe"):
        out = tmp_path / f"{part}.json"
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_rows.py"), part,
                               "--device", "guard", "--quick", "--archs", "cnn3",
                               "--out", str(out)], capture_output=True, text=True,
                              timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = json.loads(out.read_text())["rows"]
        assert rows and all(r.get("ok", True) and r.get("finite", True) for r in rows)


def test_the_gpu_rows_fail_on_one_line_without_the_device(tmp_path):
    pytest.importorskip("numpy")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_rows.py"), "bounds",
                           "--device", "tpu", "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode != 0 and "unknown device 'tpu'" in done.stderr
    assert not (tmp_path / "x.json").exists()
