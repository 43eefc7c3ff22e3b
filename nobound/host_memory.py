"""Keep freed host memory for reuse: glibc allocator settings for array-heavy loops.

A training step allocates and frees the same few-megabyte arrays (im2col columns,
activations, their gradients) every iteration. With glibc's default, *dynamic* thresholds
such blocks are often ``mmap``-ed and unmapped again when freed, and the heap top is
trimmed back to the kernel, so the next step touches fresh pages and pays one page fault
per 4 KiB (a large share of a small training step's time; see docs/benchmarks.md). Two
fixed settings remove them:

* ``M_MMAP_THRESHOLD = 256 MiB``: smaller blocks — the activations, gradients and
  im2col blocks of a batch, 33.5 MB for a 64-channel 32×32 layer at batch 128, and a
  chunk of back-substitution rows, up to a sixth of the bound's 1 GiB default budget
  (:mod:`nobound.bounds.plan`) — come from the heap and are reused from step to step;
  larger ones are still ``mmap``-ed (and returned when freed), for those NumPy asks for
  transparent huge pages;
* ``M_TRIM_THRESHOLD = 512 MiB``: up to this much free memory at the heap top is kept
  instead of being returned to the kernel after every step.

The cost is that the process keeps up to the trim threshold of freed heap memory. Only
glibc (Linux) has ``mallopt``; elsewhere nothing changes. Importing nobound changes nothing:
the ``nobound`` command applies this at start (``nobound.cli.main``), and a script that runs
training loops of its own may call :func:`tune_host_allocator` itself; the environment
variable ``NOBOUND_TUNE_MALLOC=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
_M_MMAP_THRESHOLD = -3


def tune_host_allocator(mmap_threshold: int = 256 << 20, trim_threshold: int = 512 << 20
                        ) -> bool:
    """Set glibc's mmap and trim thresholds (bytes); True when both settings took effect."""
    if os.environ.get("NOBOUND_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
