"""Backend: array module from data, unwrap, dtype policy, counter-based random streams."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from nobound import backend
from nobound.autodiff import Tensor
from nobound.backend import (
    default_dtype,
    get_array_module,
    random_stream,
    set_default_dtype,
    to_numpy,
    unwrap,
)


def test_get_array_module_follows_the_data(xp):
    array = xp.ones(3)
    assert get_array_module(array) is xp
    assert get_array_module(Tensor(array)) is xp
    assert get_array_module(np.ones(2), array, 3.0) is xp
    assert get_array_module() is np and get_array_module(1.0, [1, 2]) is np


def test_unwrap_returns_the_tensors_array_and_nothing_else_changes(xp):
    array = xp.arange(4.0)
    assert unwrap(Tensor(array)) is Tensor(array).data
    assert unwrap(array) is array  # not the ndarray's raw .data buffer
    assert unwrap(3.5) == 3.5 and unwrap(None) is None


def test_to_numpy_brings_data_to_the_host(xp):
    result = to_numpy(Tensor(xp.asarray([1.0, 2.0])))
    assert isinstance(result, np.ndarray) and result.tolist() == [1.0, 2.0]


def test_to_device_and_array_module_for():
    assert backend.array_module_for("cpu") is np
    assert isinstance(backend.to_device([1.0], "cpu"), np.ndarray)
    with pytest.raises(ValueError, match="unknown device"):
        backend.array_module_for("tpu")
    if not backend.cupy_available():
        with pytest.raises(RuntimeError, match="not available"):
            backend.array_module_for("cuda")


def test_random_stream_is_determined_by_its_arguments(xp):
    first = random_stream(7, 3, 11, name="noise", xp=xp).standard_normal(5)
    again = random_stream(7, 3, 11, name="noise", xp=xp).standard_normal(5)
    assert np.array_equal(to_numpy(first), to_numpy(again))


@pytest.mark.parametrize("other", [
    dict(seed=8, counters=(3, 11), name="noise"),
    dict(seed=7, counters=(4, 11), name="noise"),
    dict(seed=7, counters=(3, 12), name="noise"),
    dict(seed=7, counters=(11, 3), name="noise"),
    dict(seed=7, counters=(3, 11, 0), name="noise"),
    dict(seed=7, counters=(3, 11), name="init"),
])
def test_random_streams_with_any_different_argument_are_independent(xp, other):
    reference = to_numpy(random_stream(7, 3, 11, name="noise", xp=xp).standard_normal(2000))
    draws = to_numpy(random_stream(other["seed"], *other["counters"], name=other["name"],
                                   xp=xp).standard_normal(2000))
    assert not np.array_equal(reference, draws)
    # independent standard normals: sample correlation ~ N(0, 1/2000); 5 sigma is 0.11
    assert abs(np.corrcoef(reference, draws)[0, 1]) < 0.11


def test_random_stream_rejects_negative_counters():
    with pytest.raises(ValueError, match="non-negative"):
        random_stream(-1)
    with pytest.raises(ValueError, match="non-negative"):
        random_stream(1, 2, -3)


def test_default_dtype_policy():
    assert default_dtype() == np.float32
    try:
        set_default_dtype(np.float64)
        assert default_dtype() == np.float64
        assert Tensor(np.ones(2, np.float16)).dtype == np.float64
        for bad in (np.float16, np.int32, "complex128"):
            with pytest.raises(ValueError, match="float32 or float64"):
                set_default_dtype(bad)
        assert default_dtype() == np.float64  # a rejected value changes nothing
    finally:
        set_default_dtype(np.float32)
    assert default_dtype() == np.float32


def test_cupy_available_is_false_only_when_cupy_is_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` → ModuleNotFoundError
    assert backend.cupy_available() is False


def test_a_broken_cupy_fails_loudly_instead_of_looking_absent(monkeypatch):
    """A CuPy that imports but cannot reach its runtime must raise, not skip the GPU tests."""
    def broken_device_count():
        raise RuntimeError("libcudart.so.12: cannot open shared object file")

    runtime = types.SimpleNamespace(getDeviceCount=broken_device_count,
                                    CUDARuntimeError=type("CUDARuntimeError", (Exception,), {}))
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=runtime)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(RuntimeError, match="libcudart"):
        backend.cupy_available()
    with pytest.raises(RuntimeError, match="libcudart"):
        backend.array_module_for("cuda")


def test_a_cupy_without_a_gpu_is_absent_but_other_cuda_errors_raise(monkeypatch):
    class CUDARuntimeError(Exception):
        def __init__(self, status):
            self.status = status

    def count_with(status):
        def device_count():
            raise CUDARuntimeError(status)
        return device_count

    fake = types.ModuleType("cupy")
    monkeypatch.setitem(sys.modules, "cupy", fake)
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=count_with(100), CUDARuntimeError=CUDARuntimeError))
    assert backend.cupy_available() is False  # cudaErrorNoDevice
    fake.cuda.runtime.getDeviceCount = count_with(35)  # cudaErrorInsufficientDriver
    with pytest.raises(CUDARuntimeError):
        backend.cupy_available()


def test_device_names_round_trip(xp):
    assert backend.array_module_for(backend.device_of(xp)) is xp
    moved = backend.to_device(np.arange(3.0), backend.device_of(xp))
    assert get_array_module(moved) is xp
    assert to_numpy(moved).tolist() == [0.0, 1.0, 2.0]
