"""Reporting a run: a progress bar on the terminal and a JSON-lines log on disk.

The progress bar uses tqdm when it is installed and a one-line stderr bar otherwise; it
is silent when stderr is not a terminal (CI, redirected output) or when ``quiet``.
The log is one JSON object per line, appended and flushed as it goes, so a run that dies
leaves a readable log and ``tail -f`` works. Each line carries ``event`` and ``step``
(updates completed); :meth:`JsonLinesLogger.truncate_after` drops lines from beyond a
checkpoint when a run resumes, so the log reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO


class ProgressBar:
    """``update(n, **postfix)`` advances by n steps and shows the postfix values."""

    def __init__(self, total: int, initial: int = 0, description: str = "",
                 enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.total, self.count, self.description = total, initial, description
        self._tqdm = None
        self._last_draw = 0.0
        if enabled:
            try:
                from tqdm import tqdm

                self._tqdm = tqdm(total=total, initial=initial, desc=description,
                                  file=self.stream, dynamic_ncols=True, leave=True)
            except ImportError:
                self._tqdm = None

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.count += n
        if not self.enabled:
            return
        text = ", ".join(f"{k}={_short(v)}" for k, v in postfix.items())
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(text, refresh=False)
            self._tqdm.update(n)
            return
        now = time.monotonic()
        if now - self._last_draw < 0.2 and self.count < self.total:
            return
        self._last_draw = now
        width = 30
        filled = int(width * self.count / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.description} [{bar}] {self.count}/{self.total} {text}")
        self.stream.flush()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _json_safe(value: Any) -> Any:
    """Floats that JSON cannot hold (nan, inf) become None; NumPy scalars become Python."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class JsonLinesLogger:
    """Append JSON objects, one per line, to ``path`` (flushed after each line)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def log(self, record: dict[str, Any]) -> None:
        line = json.dumps(_json_safe(record), sort_keys=False)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
        return records

    def truncate_after(self, step: int) -> None:
        """Keep only the lines logged at or before ``step`` (rewritten atomically)."""
        if not self.path.exists():
            return
        kept = [r for r in self.read() if int(r.get("step", 0)) <= step]
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            for record in kept:
                handle.write(json.dumps(record) + "\n")
        os.replace(temporary, self.path)
