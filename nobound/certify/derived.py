"""Values derived once from a host array, kept while the array lives.

The certifier multiplies the same stored weight matrices leaf after leaf, sub-problem after
sub-problem; what it derives from one — |W|, CSR copies, whether it has a non-zero entry —
costs a pass over the whole matrix, so it is made once per array and kind. Keyed by the
array's identity (a NumPy array is not hashable by value) and dropped when the array is
collected, so a new array reusing the id never sees a stale value. Sound only for arrays
that are never modified afterwards: the stored network copies its arrays from the model
(:mod:`nobound.certify.stored_network`), and the search's weights are the dense network's.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

_DERIVED: dict[tuple[str, int], tuple[weakref.ref, Any]] = {}


def derived_once(kind: str, array: np.ndarray, make: Callable[[np.ndarray], Any]) -> Any:
    """``make(array)``, computed on the first call for this array and ``kind``."""
    key = (kind, id(array))
    kept = _DERIVED.get(key)
    if kept is not None and kept[0]() is array:
        return kept[1]
    value = make(array)
    _DERIVED[key] = (weakref.ref(array), value)
    weakref.finalize(array, _DERIVED.pop, key, None)
    return value


__all__ = ["derived_once"]
