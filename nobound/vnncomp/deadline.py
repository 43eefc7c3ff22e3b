"""A wall-clock budget counted from the start of the process, kept by a separate process.

VNN-COMP measures a verifier from the moment ``run_instance.sh`` starts it, so start-up
(the interpreter, NumPy, ONNX) and the import of the network count against the timeout.
:func:`process_start_time` reads when the kernel started this process (Linux
``/proc/self/stat``), falling back to the moment this module was imported.

:func:`run_until` keeps the deadline. A watchdog *thread* cannot: it needs the GIL, and C
extensions hold it for seconds (importing ``onnx`` initialises ``ml_dtypes`` in one call).
So the work runs in a forked child that sends its JSON-able outcome through a pipe, while
the parent only waits on the pipe; at the deadline the parent kills the child and reports
that time ran out. Only the parent writes results, so there is no race between the
verdict and the timeout.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

_IMPORTED_AT = time.time()


def process_start_time() -> float:
    """Wall-clock time (``time.time()`` scale) at which this process started."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])      # field 22 of stat(5), counted after the name
        with open("/proc/uptime", encoding="ascii") as uptime:
            seconds_since_boot = float(uptime.read().split()[0])
        age = seconds_since_boot - started_ticks / os.sysconf("SC_CLK_TCK")
        return min(time.time() - max(age, 0.0), _IMPORTED_AT)
    except (OSError, ValueError, IndexError):
        return _IMPORTED_AT


class TimedOut(Exception):
    """The deadline passed before the work finished (the child was killed)."""


def run_until(work: Callable[[], Any], deadline: float) -> Any:
    """``work()`` in a forked child; its JSON-able result, or :class:`TimedOut` at
    ``deadline`` (``time.time()`` scale). An exception in the child comes back as
    ``RuntimeError`` with the child's one-line message; a child that dies without an
    answer (a signal, the out-of-memory killer) also raises ``RuntimeError``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: do the work, send the outcome, leave without cleanup
        os.close(read_end)
        try:
            message = {"result": work()}
        except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
            text = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            message = {"error": text, "type": type(error).__name__,
                       "trace": traceback.format_exc(limit=3)}
        try:
            with os.fdopen(write_end, "w", encoding="utf-8") as pipe:
                json.dump(message, pipe)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    try:
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise TimedOut()
            ready, _, _ = select.select([read_end], [], [], remaining)
            if not ready:
                raise TimedOut()
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except TimedOut:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError(f"the verifier process died without an answer (wait status "
                           f"{status})")
    message = json.loads(b"".join(chunks).decode("utf-8"))
    if "error" in message:
        error = RuntimeError(message["error"])
        error.child_type = message["type"]  # type: ignore[attr-defined]
        raise error
    return message["result"]
