"""Array backends, dtype policy and random streams.

nobound never hard-wires NumPy in compute code: every function asks the data which array
module it lives in (:func:`get_array_module`), so the same code runs on NumPy (CPU) and
CuPy (GPU). CuPy is never imported unless an array already lives on the GPU or the user
explicitly asks for the ``"cuda"`` device, so ``import nobound`` works without it.

Random numbers come from *counter-based streams*: a generator is derived from
``(seed, step, stream name)`` instead of being carried along as mutable state. A run that
is stopped and resumed at step ``k`` therefore draws exactly the numbers an uninterrupted
run draws at step ``k`` (the basis of bit-for-bit resume), and population noise can be
regenerated from its seed instead of being stored.
"""

from __future__ import annotations

import hashlib
import sys
from types import ModuleType
from typing import Any

import numpy as np

_DEFAULT_DTYPE = np.float32


def unwrap(value: Any) -> Any:
    """The array inside a Tensor; anything else is returned unchanged.

    (``getattr(x, "data", x)`` would be wrong: a NumPy array's ``.data`` is its raw buffer.)
    """
    return value.data if type(value).__name__ == "Tensor" else value


GUARD_MODULE = "nobound.testing.guard_xp"


def get_array_module(*arrays: Any) -> ModuleType:
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    The decision is made from the type's module name, so CuPy is not imported here.
    Tensors (anything with a ``.data`` array) are looked through. Arrays of the CPU
    stand-in for CuPy (:mod:`nobound.testing.guard_xp`, used by the tests) give that module.
    """
    for array in arrays:
        module = type(unwrap(array)).__module__
        if module.startswith("cupy"):
            return sys.modules["cupy"]
        if module == GUARD_MODULE:
            return sys.modules[GUARD_MODULE]
    return np


def cupy_available() -> bool:
    """Whether CuPy is installed and sees at least one GPU.

    CuPy not installed, or installed on a machine without a GPU: False. Anything else
    (a CuPy that fails to import, a driver or runtime error) is raised with CuPy's own
    message: a broken installation must not pass for an absent one.
    """
    try:
        import cupy
    except ModuleNotFoundError as error:
        if error.name == "cupy":
            return False
        raise
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except cupy.cuda.runtime.CUDARuntimeError as error:
        if error.status == _CUDA_ERROR_NO_DEVICE:
            return False
        raise


_CUDA_ERROR_NO_DEVICE = 100  # cudaErrorNoDevice: the driver works and there is no GPU

DEVICES = ("cpu", "cuda", "guard")


def array_module_for(device: str) -> ModuleType:
    """The array module for a device name: ``"cpu"`` → NumPy, ``"cuda"`` → CuPy,
    ``"guard"`` → the CPU stand-in for CuPy that tests use to catch host conversions."""
    if device == "cpu":
        return np
    if device in ("cuda", "gpu"):
        if not cupy_available():
            raise RuntimeError("device 'cuda' requested but CuPy or a GPU is not available "
                               "(install nobound[cuda12] or nobound[cuda13])")
        import cupy

        return cupy
    if device == "guard":
        from nobound.testing import guard_xp

        return guard_xp
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


def device_of(xp: ModuleType) -> str:
    """The device name of an array module: the inverse of :func:`array_module_for`."""
    if xp is np:
        return "cpu"
    return "guard" if xp.__name__ == GUARD_MODULE else "cuda"


def to_device(array: Any, device: str) -> Any:
    """Explicitly move an array to ``device`` (a host↔device transfer when they differ)."""
    xp = array_module_for(device)
    if xp is np:
        return to_numpy(array)
    array = unwrap(array)
    if get_array_module(array) not in (np, xp):  # no direct path between two devices
        array = to_numpy(array)
    return xp.asarray(array)


def to_numpy(array: Any) -> np.ndarray:
    """Explicitly bring an array to the host (a no-op for NumPy arrays).

    The one way data leaves a device: CuPy arrays (and the guard's) refuse ``np.asarray``.
    """
    array = unwrap(array)
    if get_array_module(array) is not np:
        return array.get()
    return np.asarray(array)


def default_dtype() -> np.dtype:
    """The floating dtype used when none is given (float32 unless changed)."""
    return np.dtype(_DEFAULT_DTYPE)


def set_default_dtype(dtype: Any) -> None:
    """Set the default floating dtype; only float32 and float64 are supported."""
    global _DEFAULT_DTYPE
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"default dtype must be float32 or float64, got {dtype}")
    _DEFAULT_DTYPE = dtype.type


def _stream_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def random_stream(seed: int, *counters: int, name: str = "default",
                  xp: ModuleType = np) -> Any:
    """A generator determined by ``(seed, *counters, name)`` alone.

    ``random_stream(seed, epoch, step, name="pgpe-noise")`` gives the same numbers
    whenever it is asked, which is what makes resume bit-for-bit and lets PGPE regenerate
    its noise instead of storing it. ``xp`` selects a NumPy or CuPy generator.
    """
    if seed < 0 or any(c < 0 for c in counters):
        raise ValueError("seed and counters must be non-negative")
    sequence = np.random.SeedSequence([int(seed), _stream_key(name), *map(int, counters)])
    if xp is np:
        return np.random.Generator(np.random.PCG64(sequence))
    return xp.random.default_rng(int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1))
