"""A CPU stand-in for CuPy that fails where nobound would fail on a GPU.

Without a GPU, nothing tests nobound's CuPy path, and the mistakes that break it are the
same few every time: NumPy reading data that lives on the device (``np.asarray(x)``,
``float(np.max(x))``), a NumPy array mixed into a device computation, a NumPy-only
argument (``xp.indices(shape, sparse=True)``, ``xp.clip(x, min=0)``), and tests that
assume the device draws NumPy's random numbers. This module is an array module like
NumPy and CuPy (``get_array_module`` returns it for its arrays; ``--device guard`` selects
it) whose arrays behave as CuPy's do in exactly those places:

- ``np.asarray(array)`` raises ``TypeError`` (CuPy's ``__array__`` does); data reaches
  the host only through ``array.get()``, i.e. :func:`nobound.backend.to_numpy`;
- an operation mixing a guard array and a ``numpy.ndarray`` raises ``TypeError``, also
  through NumPy's own functions (``np.maximum(x, host)``) and assignment (``x[:2] = host``;
  host arrays as indices are transferred, as CuPy does); NumPy functions on guard arrays
  alone are dispatched to this module's function of the same name (as CuPy dispatches
  them), and NumPy functions that this module does not offer raise;
- only the functions nobound uses exist here, with CuPy's argument lists;
- reductions return 0-d arrays, not NumPy scalars (CuPy's do: they stay on the device);
- random generators draw from Philox, not NumPy's PCG64: different numbers for the same
  seed, as CuPy's generators draw.

Underneath it computes with NumPy in the same precision, so results match the NumPy
backend bit for bit wherever no random numbers are involved. It checks the interface, not
CUDA's kernels (their rounding, atomics and memory): it does not replace a GPU run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from numbers import Number
from typing import Any

import numpy as np

IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. Please use "
                       "`.get()` to construct a NumPy array explicitly.")


def _mixing_error(value: Any) -> TypeError:
    return TypeError(f"Unsupported type {type(value)} (a guard array, like a CuPy array, "
                     "does not mix with host arrays: move one explicitly)")


def _host(value: Any, transfer: bool = False) -> Any:
    """The NumPy array under a guard array; scalars pass; a numpy.ndarray is refused
    unless this is an explicit transfer (``asarray``, indexing and assignment accept one,
    as CuPy's do)."""
    if isinstance(value, ndarray):
        return value._host
    if isinstance(value, np.ndarray):
        if transfer:
            return value
        raise _mixing_error(value)
    if isinstance(value, list | tuple):
        return type(value)(_host(v, transfer) for v in value)
    if isinstance(value, dict):
        return {k: _host(v, transfer) for k, v in value.items()}
    return value


def _device(value: Any) -> Any:
    """Wrap NumPy results back into guard arrays (NumPy scalars become 0-d arrays)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_device(v) for v in value)
    if isinstance(value, list):
        return [_device(v) for v in value]
    return value


def _is_scalar(value: Any) -> bool:
    return isinstance(value, Number | np.generic | bool)


class ndarray:  # noqa: N801  (CuPy's name, so ``isinstance(x, xp.ndarray)`` reads the same)
    """A guard array: a NumPy array that refuses to leave the 'device' implicitly."""

    __slots__ = ("_host", "__weakref__")
    __array_priority__ = 100  # CuPy's: a Tensor (priority 1000) still wins ``array + tensor``

    def __init__(self, host: np.ndarray) -> None:
        if not isinstance(host, np.ndarray):
            raise TypeError("guard arrays are made by the module's functions, e.g. asarray")
        self._host = host
        _POOL.allocated(host)

    # ---------------------------------------------------------------- leaving the device
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(IMPLICIT_CONVERSION)

    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
        """The explicit device→host copy."""
        return np.array(self._host, order=order)

    def item(self) -> Any:
        return self._host.item()

    def tolist(self) -> Any:
        return self._host.tolist()

    def __bool__(self) -> bool:
        return bool(self._host)

    def __float__(self) -> float:
        return float(self._host)

    def __int__(self) -> int:
        return int(self._host)

    def __format__(self, spec: str) -> str:
        return format(self._host, spec) if self._host.ndim else format(self._host.item(), spec)

    def __repr__(self) -> str:
        return "guard_" + repr(self._host)

    # ---------------------------------------------------------------- NumPy protocols
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method not in ("__call__", "reduce", "at"):
            return NotImplemented
        hosts = [_host(v) for v in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(_host(v) for v in kwargs["out"])
        result = getattr(ufunc, method)(*hosts, **kwargs)
        if method == "at":
            return None
        return _device(result)

    def __array_function__(self, func: Callable, types: Any, args: Any, kwargs: Any) -> Any:
        ours = _FUNCTIONS.get(func.__name__)
        if ours is None:
            raise TypeError(f"numpy.{func.__name__} is not offered for guard arrays (CuPy "
                            "implements part of NumPy): use the array module's function")
        return ours(*args, **kwargs)

    # ---------------------------------------------------------------- array facts
    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    nbytes = property(lambda self: self._host.nbytes)
    itemsize = property(lambda self: self._host.itemsize)
    strides = property(lambda self: self._host.strides)
    flags = property(lambda self: self._host.flags)
    T = property(lambda self: ndarray(self._host.T))

    def __len__(self) -> int:
        return len(self._host)

    def __iter__(self) -> Any:
        return (_device(row) for row in self._host)

    # ---------------------------------------------------------------- indexing
    def __getitem__(self, key: Any) -> Any:
        return _device(self._host[_host(key, transfer=True)])

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, np.ndarray) and value.ndim:  # CuPy: "cannot be used for fill"
            raise _mixing_error(value)
        self._host[_host(key, transfer=True)] = _host(value, transfer=True)

    # ---------------------------------------------------------------- arithmetic
    def _binary(self, operation: Callable, other: Any, reflected: bool = False) -> Any:
        if not isinstance(other, ndarray | np.ndarray) and not _is_scalar(other):
            if getattr(other, "__array_priority__", 0) > self.__array_priority__:
                return NotImplemented  # e.g. a Tensor: let its reflected operator run
            if not isinstance(other, list | tuple):
                return NotImplemented
        other = _host(other)
        return _device(operation(other, self._host) if reflected
                       else operation(self._host, other))

    def _inplace(self, operation: np.ufunc, other: Any) -> ndarray:
        operation(self._host, _host(other), out=self._host)
        return self

    def __neg__(self) -> ndarray:
        return _device(-self._host)

    def __pos__(self) -> ndarray:
        return _device(+self._host)

    def __abs__(self) -> ndarray:
        return _device(np.abs(self._host))

    def __invert__(self) -> ndarray:
        return _device(~self._host)


def _binary_operators() -> None:
    table = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
             "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power,
             "matmul": np.matmul, "and": np.bitwise_and, "or": np.bitwise_or,
             "xor": np.bitwise_xor}
    for name, operation in table.items():
        setattr(ndarray, f"__{name}__",
                lambda self, other, op=operation: self._binary(op, other))
        setattr(ndarray, f"__r{name}__",
                lambda self, other, op=operation: self._binary(op, other, reflected=True))
        setattr(ndarray, f"__i{name}__",
                lambda self, other, op=operation: self._inplace(op, other))
    for name, operation in {"lt": np.less, "le": np.less_equal, "gt": np.greater,
                            "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal}.items():
        setattr(ndarray, f"__{name}__", lambda self, other, op=operation: self._binary(op, other))


def _methods() -> None:
    """Array methods CuPy offers (NumPy's signature for these is CuPy's too)."""
    names = ("reshape", "transpose", "swapaxes", "sum", "mean", "max", "min", "argmax",
             "argmin", "astype", "copy", "ravel", "flatten", "all", "any", "clip", "dot",
             "prod", "std", "var", "cumsum", "squeeze", "repeat", "take", "nonzero", "fill",
             "sort", "argsort", "round", "view", "diagonal", "trace")

    def method(name: str) -> Callable:
        def call(self: ndarray, *args: Any, **kwargs: Any) -> Any:
            return _device(getattr(self._host, name)(*_host(args), **_host(kwargs)))
        call.__name__ = name
        return call

    for name in names:
        setattr(ndarray, name, method(name))


_binary_operators()
_methods()
ndarray.__hash__ = None  # like NumPy's and CuPy's arrays (they define __eq__)


class _Ufunc:
    """A NumPy ufunc over guard arrays: call, ``reduce`` and ``at`` (CuPy ≥ 13 has
    ``add.at``, the scatter-add)."""

    def __init__(self, ufunc: np.ufunc) -> None:
        self._ufunc, self.__name__ = ufunc, ufunc.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _device(self._ufunc(*_host(args), **_host(kwargs)))

    def reduce(self, array: ndarray, axis: Any = 0, dtype: Any = None, out: Any = None,
               keepdims: bool = False) -> Any:
        return _device(self._ufunc.reduce(_host(array), axis=axis, dtype=dtype,
                                          out=_host(out), keepdims=keepdims))

    def at(self, a: ndarray, indices: Any, b: Any = None) -> None:
        if not isinstance(a, ndarray):
            raise _mixing_error(a)
        self._ufunc.at(a._host, _host(indices, transfer=True), _host(b))


def _plain(name: str) -> Callable:
    """A module function whose CuPy argument list is NumPy's for what nobound passes."""
    numpy_function = getattr(np, name)

    @functools.wraps(numpy_function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return _device(numpy_function(*_host(args), **_host(kwargs)))
    return call


# ------------------------------------------------------------------- creation (CuPy's lists)
def asarray(a: Any, dtype: Any = None, order: Any = None, *, blocking: bool = False) -> ndarray:
    """Host data (lists, scalars, NumPy arrays) → device: the explicit transfer."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    if isinstance(a, list | tuple):
        a = _host(a, transfer=True)
    return ndarray(np.asarray(a, dtype=dtype, order=order))


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", subok: bool = False,
          ndmin: int = 0, *, blocking: bool = False) -> ndarray:
    return ndarray(np.array(_host(obj, transfer=True), dtype=dtype, copy=copy, order=order,
                            ndmin=ndmin))


def ascontiguousarray(a: ndarray, dtype: Any = None) -> ndarray:
    return ndarray(np.ascontiguousarray(_host(a), dtype=dtype))


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> ndarray:
    return ndarray(np.arange(start, stop, step, dtype=dtype) if stop is not None
                   else np.arange(start, step=step, dtype=dtype))


def zeros(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return ndarray(np.zeros(shape, dtype, order))


def ones(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return ndarray(np.ones(shape, dtype, order))


def empty(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return ndarray(np.empty(shape, dtype, order))


def full(shape: Any, fill_value: Any, dtype: Any = None, order: str = "C") -> ndarray:
    return ndarray(np.full(shape, _host(fill_value), dtype, order))


def _like(numpy_function: Callable) -> Callable:
    def call(a: ndarray, dtype: Any = None, order: str = "K", subok: Any = None,
             shape: Any = None) -> ndarray:
        return ndarray(numpy_function(_host(a), dtype=dtype, order=order, shape=shape))
    call.__name__ = numpy_function.__name__
    return call


zeros_like, ones_like, empty_like = (_like(f) for f in (np.zeros_like, np.ones_like,
                                                        np.empty_like))


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = float,  # noqa: N803
        order: str = "C") -> ndarray:
    return ndarray(np.eye(N, M, k, dtype, order))


def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True,
             retstep: bool = False, dtype: Any = None, axis: int = 0) -> Any:
    return _device(np.linspace(start, stop, num, endpoint, retstep, dtype, axis))


def indices(dimensions: Sequence[int], dtype: Any = int) -> ndarray:
    """CuPy's ``indices`` has no ``sparse`` argument."""
    return ndarray(np.indices(dimensions, dtype))


def meshgrid(*xi: ndarray, indexing: str = "xy", sparse: bool = False,
             copy: bool = True) -> list[ndarray]:
    return _device(np.meshgrid(*_host(xi), indexing=indexing, sparse=sparse, copy=copy))


# ------------------------------------------------------------------- manipulation, products
def clip(a: ndarray, a_min: Any, a_max: Any, out: Any = None) -> ndarray:
    """CuPy's clip: positional bounds, no NumPy 2 ``min=``/``max=`` keywords."""
    return _device(np.clip(_host(a), _host(a_min), _host(a_max), out=_host(out)))


def pad(array: ndarray, pad_width: Any, mode: str = "constant", **kwargs: Any) -> ndarray:
    return ndarray(np.pad(_host(array), pad_width, mode, **_host(kwargs)))


def einsum(*operands: Any, dtype: Any = None, optimize: Any = False) -> ndarray:
    return _device(np.einsum(*_host(operands), dtype=dtype, optimize=optimize))


def concatenate(tup: Sequence[ndarray], axis: int | None = 0, out: Any = None, *,
                dtype: Any = None, casting: str = "same_kind") -> ndarray:
    return ndarray(np.concatenate(_host(list(tup)), axis=axis, out=_host(out), dtype=dtype,
                                  casting=casting))


def stack(tup: Sequence[ndarray], axis: int = 0, out: Any = None, *, dtype: Any = None,
          casting: str = "same_kind") -> ndarray:
    return ndarray(np.stack(_host(list(tup)), axis=axis, out=_host(out), dtype=dtype,
                            casting=casting))


def where(condition: Any, x: Any = None, y: Any = None) -> Any:
    if x is None and y is None:
        return _device(np.where(_host(condition)))
    return _device(np.where(_host(condition), _host(x), _host(y)))


def broadcast_to(array: ndarray, shape: Sequence[int]) -> ndarray:
    return ndarray(np.broadcast_to(_host(array), shape))


def take_along_axis(a: ndarray, indices: ndarray, axis: int | None) -> ndarray:
    return ndarray(np.take_along_axis(_host(a), _host(indices), axis))


def unravel_index(indices: Any, dims: Sequence[int], order: str = "C") -> tuple:
    return _device(np.unravel_index(_host(indices), dims, order))


def result_type(*arrays_and_dtypes: Any) -> np.dtype:
    return np.result_type(*(a.dtype if isinstance(a, ndarray) else a
                            for a in arrays_and_dtypes))


# plain functions: NumPy's argument list is CuPy's for what nobound passes
any, all, cumsum, argsort, flatnonzero, sum, prod, amax, amin, argmax, argmin, mean, \
    reshape, transpose, swapaxes, squeeze, expand_dims, moveaxis, repeat, tile, \
    array_equal, allclose, isclose, count_nonzero, nonzero, diagonal, tensordot, dot, \
    sort, unique, outer, tril, triu, split = (  # noqa: A001
        _plain(name) for name in (
            "any", "all", "cumsum", "argsort", "flatnonzero", "sum", "prod", "amax", "amin",
            "argmax", "argmin", "mean", "reshape", "transpose", "swapaxes", "squeeze",
            "expand_dims", "moveaxis", "repeat", "tile", "array_equal", "allclose",
            "isclose", "count_nonzero", "nonzero", "diagonal", "tensordot", "dot", "sort",
            "unique", "outer", "tril", "triu", "split"))
max, min = amax, amin  # noqa: A001

# ufuncs
_UFUNCS = ("add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "negative",
           "power", "remainder", "absolute", "sign", "exp", "log", "log1p", "expm1", "sqrt",
           "square", "maximum", "minimum", "fmax", "fmin", "less", "less_equal", "greater",
           "greater_equal", "equal", "not_equal", "logical_and", "logical_or", "logical_not",
           "isfinite", "isnan", "isinf", "floor", "ceil", "tanh", "matmul", "bitwise_and",
           "bitwise_or", "nextafter", "signbit", "copysign", "reciprocal")
for _name in _UFUNCS:
    globals()[_name] = _Ufunc(getattr(np, _name))
abs = globals()["absolute"]  # noqa: A001

# dtypes and constants: CuPy uses NumPy's
float16, float32, float64, int8, int16, int32, int64, uint8, uint32, uint64, bool_ = (
    np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
    np.uint32, np.uint64, np.bool_)
dtype, finfo, iinfo = np.dtype, np.finfo, np.iinfo
inf, nan, pi, e, newaxis = np.inf, np.nan, np.pi, np.e, np.newaxis

# what NumPy's functions dispatch to (``np.sum(guard)`` → ``sum``), as CuPy's arrays do
_FUNCTIONS: dict[str, Callable] = {
    name: value for name, value in globals().items()
    if callable(value) and not name.startswith("_") and not isinstance(value, type)
    and name != "functools"}


# ------------------------------------------------------------------- random numbers
class Generator:
    """CuPy's ``random.Generator`` methods nobound uses, drawing from Philox: the same
    seed gives different numbers than NumPy's ``default_rng`` (as on a GPU)."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.Generator(np.random.Philox(seed))

    def standard_normal(self, size: Any = None, dtype: Any = np.float64,
                        out: Any = None) -> ndarray:
        return ndarray(np.asarray(self._rng.standard_normal(size, dtype=dtype)))

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> ndarray:
        return ndarray(np.asarray(self._rng.random(size, dtype=dtype)))

    def uniform(self, low: Any = 0.0, high: Any = 1.0, size: Any = None,
                dtype: Any = np.float64) -> ndarray:
        return ndarray(np.asarray(self._rng.uniform(_host(low), _host(high), size),
                                  dtype=dtype))

    def integers(self, low: Any, high: Any = None, size: Any = None, dtype: Any = np.int64,
                 endpoint: bool = False) -> ndarray:
        return ndarray(np.asarray(self._rng.integers(low, high, size, dtype, endpoint)))


class _Random:
    Generator = Generator

    @staticmethod
    def default_rng(seed: int | None = None) -> Generator:
        if not isinstance(seed, int | np.integer):
            raise TypeError("the guard's default_rng takes an integer seed")
        return Generator(int(seed))


random = _Random()


# ------------------------------------------------------------------- device and memory pool
class _MemoryPool:
    """CuPy's memory pool, faked: counts the bytes of guard arrays created since the last
    ``free_all_blocks`` (an upper bound of the peak, which is what callers budget with)."""

    def __init__(self) -> None:
        self._allocated = 0

    def allocated(self, host: np.ndarray) -> None:
        if host.base is None:
            self._allocated += host.nbytes

    def free_all_blocks(self) -> None:
        self._allocated = 0

    def used_bytes(self) -> int:
        return self._allocated

    def total_bytes(self) -> int:
        return self._allocated

    def free_bytes(self) -> int:
        return 0


_POOL = _MemoryPool()


def get_default_memory_pool() -> _MemoryPool:
    return _POOL


class _Device:
    mem_info = (8 * 2**30, 16 * 2**30)  # (free, total): a pretend 16 GiB card

    def synchronize(self) -> None:
        pass


class _Cuda:
    Device = _Device


cuda = _Cuda()
