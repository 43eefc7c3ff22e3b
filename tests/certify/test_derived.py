"""Values derived once per array (nobound/certify/derived.py): made on the first call,
kept per kind, dropped with the array."""

from __future__ import annotations

import gc

import numpy as np

from nobound.certify import derived
from nobound.certify.derived import derived_once


def test_made_once_per_array_and_kind():
    calls = []

    def make(array):
        calls.append(id(array))
        return float(array.sum())

    a = np.arange(4.0)
    assert derived_once("sum", a, make) == 6.0
    assert derived_once("sum", a, make) == 6.0
    assert len(calls) == 1
    assert derived_once("other", a, lambda x: "other") == "other"
    b = a.copy()  # equal values, another array: derived anew
    assert derived_once("sum", b, make) == 6.0
    assert len(calls) == 2


def test_dropped_when_the_array_is_collected():
    a = np.ones(3)
    key = ("size", id(a))
    derived_once("size", a, lambda x: x.size)
    assert key in derived._DERIVED
    del a
    gc.collect()
    assert key not in derived._DERIVED
