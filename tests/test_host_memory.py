"""The glibc allocator settings the ``nobound`` command applies (nobound.host_memory); importing
nobound applies nothing."""

from __future__ import annotations

import platform
import resource
import sys

import numpy as np
import pytest

from nobound.host_memory import tune_host_allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_opting_out_changes_nothing(monkeypatch):
    monkeypatch.setenv("NOBOUND_TUNE_MALLOC", "0")
    assert tune_host_allocator() is False


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_arrays_are_reused_without_page_faults(monkeypatch):
    """Three 3 MiB arrays freed together exceed glibc's default trim threshold (twice the
    largest freed block), so by default the next round maps fresh pages again: ~768 faults
    per array. With the settings the memory is kept and reused."""
    monkeypatch.delenv("NOBOUND_TUNE_MALLOC", raising=False)
    assert tune_host_allocator() is True
    size = 3 * 2**20 // 8  # below NumPy's 4 MiB huge-page threshold: 4 KiB pages

    def one_round() -> None:
        arrays = [np.ones(size) for _ in range(3)]
        del arrays

    one_round()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        one_round()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 300, f"{faults} page faults: freed memory was returned to the kernel"
