"""Fixtures of the certifier tests; the instances live in certify_instances.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from certify_instances import bab_instance


@pytest.fixture(scope="module")
def branching_instance():
    """(model, problem): certified, but only after branching."""
    return bab_instance()


class VirtualClock:
    """``time.perf_counter`` that moves only when instrumented work is done, so deadline
    tests are deterministic and measure lateness in units of work, not seconds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        self.largest_step = 0.0
        self._monkeypatch = monkeypatch

    def __call__(self) -> float:
        return self.now

    def advance(self, cost: float) -> None:
        self.now += cost
        self.largest_step = max(self.largest_step, cost)

    def reset(self) -> None:
        self.now, self.largest_step = 0.0, 0.0

    def charge(self, owner: Any, name: str, cost: float,
               count: Callable[..., int] | None = None) -> None:
        """Make ``owner.name`` (a module's function) advance the clock by ``cost`` times
        ``count(*args)`` (default 1) each time it returns."""
        function = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            self.advance(cost * (1 if count is None else count(*args)))
            return result

        self._monkeypatch.setattr(owner, name, timed)


@pytest.fixture
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """A :class:`VirtualClock` installed as ``time.perf_counter`` (every deadline in
    nobound.certify reads it); charge the work that should cost time with ``charge``."""
    clock = VirtualClock(monkeypatch)
    monkeypatch.setattr(time, "perf_counter", clock)
    return clock
