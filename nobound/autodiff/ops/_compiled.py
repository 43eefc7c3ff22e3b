"""Optional compiled kernels (Numba): imported on first use, skipped when unavailable.

Modules named ``_*_numba`` in this package hold loops compiled with Numba. Importing
Numba and loading the compiled loops takes about a second, which ``import nobound``
should not pay, so they are imported on first use. Numba is optional: without it (or with
``NOBOUND_NUMBA=0``) every caller keeps its NumPy path, which computes the same arrays.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import numpy as np

_loaded: dict[str, ModuleType | None] = {}

#: Below this many elements a compiled call's dispatch (a few µs) outweighs its gain.
COMPILED_PASS_MIN_SIZE = 1 << 14


def numba_kernels(module: str) -> ModuleType | None:
    """``nobound.autodiff.ops.<module>`` (or the dotted ``module`` itself, e.g.
    ``nobound.bounds._back_substitution_numba``) once imported; None without Numba or with
    ``NOBOUND_NUMBA=0``."""
    if module not in _loaded:
        kernels = None
        if os.environ.get("NOBOUND_NUMBA", "1") != "0":
            try:
                kernels = importlib.import_module(
                    module if "." in module else f"nobound.autodiff.ops.{module}")
            except ImportError:
                pass
        # stored once decided, so a thread arriving meanwhile imports it too rather than
        # seeing a half-made decision
        _loaded[module] = kernels
    return _loaded[module]


def suits_compiled_pass(data: Any) -> bool:
    """Whether a one-pass compiled loop pays for ``data``: a C-contiguous NumPy array of
    float32 or float64 with at least COMPILED_PASS_MIN_SIZE elements."""
    return isinstance(data, np.ndarray) and data.dtype.type in (np.float32, np.float64) \
        and data.size >= COMPILED_PASS_MIN_SIZE and data.flags.c_contiguous
