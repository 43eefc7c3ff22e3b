"""The VNN-COMP result file: the verdict on the first line, then what goes with it.

==========  ===================================================================
first line  rest of the file
==========  ===================================================================
sat         the counterexample ``((X_0 v) … (Y_0 v) …)``: inputs in the file's order
            and the file's own outputs at that input
unsat       nothing
timeout     nothing
unknown     the reason (node limit, bounds too loose, …)
error       the reason (unsupported operator, malformed property, …)
==========  ===================================================================

A :class:`ResultFile` removes any file already at its path when it is created (a stale
verdict from an earlier run must never be read as this run's), writes through a temporary
file and ``os.replace`` (a reader never sees half a file), and accepts only the first
verdict: the verifier and the timeout watchdog may race, and whichever writes first wins.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

VERDICTS = ("sat", "unsat", "timeout", "unknown", "error")


class ResultFile:
    """One verdict, written once (see the module doc)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"--results-file {path}: is a directory")
        self.path.unlink(missing_ok=True)
        self._lock = threading.Lock()
        self.verdict: str | None = None

    def write(self, verdict: str, body: str = "") -> bool:
        """Write ``verdict`` (and ``body``) unless a verdict was already written."""
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        with self._lock:
            if self.verdict is not None:
                return False
            text = verdict + "\n" + (body if not body or body.endswith("\n") else body + "\n")
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)
            self.verdict = verdict
            return True


def read_result(path: str | Path) -> tuple[str, str]:
    """(verdict, rest) of a result file; ``("missing", "")`` when there is none."""
    path = Path(path)
    if not path.is_file():
        return "missing", ""
    text = path.read_text(encoding="utf-8")
    first, _, rest = text.partition("\n")
    verdict = first.strip().lower()
    # VNN-COMP 2021 wrote holds/violated for unsat/sat
    verdict = {"holds": "unsat", "violated": "sat"}.get(verdict, verdict)
    return (verdict if verdict in VERDICTS else "invalid"), rest
