"""Every code block in the docs runs: ```python blocks execute in-process (blocks of one page
share a namespace, in order), ```bash blocks run in a shell from a scratch directory.
The generated CLI/API references must be up to date with the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md"))  # README commands run in tests/cli and .ci/run
FENCE = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def blocks(page: Path, language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(page.read_text(encoding="utf-8"))
            if lang == language]


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")],
                         ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for code in blocks(page, "python"):
        exec(compile(code, str(page), "exec"), namespace)  # noqa: S102 - docs are ours


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "bash")], ids=lambda p: p.name)
def test_bash_blocks_run(page, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NOBOUND_REPO=str(ROOT))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    for code in blocks(page, "bash"):
        if "pip install" in code:  # set-up commands are exercised by .ci/run itself
            continue
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{page.name} block failed:\n{code}\n{result.stderr}"


def test_generated_references_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "build_reference.py"),
                             "--check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
