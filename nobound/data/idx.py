"""A strict reader for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the element type, ``NN`` the
number of dimensions), ``NN`` big-endian ``uint32`` sizes, then the elements in C order,
big-endian. The reader accepts a file only if every part of that is consistent: the two
leading zero bytes, a known type code, the expected rank, and a payload whose length is
*exactly* the header plus ``prod(dims) * itemsize``. A truncated or corrupted gzip stream,
a wrong magic number or a size mismatch raises :class:`~nobound.data.errors.DataError`
naming the file.

Files ending in ``.gz`` are decompressed in memory; other files are read as raw IDX.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .checksums import digest_bytes
from .errors import DataError

#: IDX element-type codes and the matching big-endian NumPy dtypes.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_payload(path: str | Path) -> bytes:
    """The bytes of ``path``, gunzipped if its name ends in ``.gz``.

    Raises :class:`DataError` (naming the file) for a missing file, a truncated gzip
    stream, a CRC/length mismatch or any other decompression failure.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except OSError as exc:
        raise DataError(f"cannot read file ({exc})", path) from exc
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        raise DataError(f"truncated gzip stream ({exc})", path) from exc
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"corrupted gzip stream ({exc})", path) from exc


def parse_idx(payload: bytes, path: str | Path | None = None, *,
              ndim: int | None = None, dtype: np.dtype | None = None) -> np.ndarray:
    """Parse an uncompressed IDX payload into a (read-only view of a) NumPy array.

    ``ndim`` and ``dtype``, when given, are required to match the header. The result has
    the header's shape and native byte order.
    """

    def fail(msg: str) -> DataError:
        return DataError(msg, path) if path is not None else DataError(f"IDX payload: {msg}")

    if len(payload) < 4:
        raise fail(f"too short for an IDX header ({len(payload)} bytes)")
    zero0, zero1, type_code, rank = payload[:4]
    if zero0 != 0 or zero1 != 0:
        raise fail(f"bad IDX magic number 0x{payload[:4].hex()} (must start with 0x0000)")
    if type_code not in IDX_DTYPES:
        raise fail(f"unknown IDX element type 0x{type_code:02x} (magic 0x{payload[:4].hex()})")
    if rank == 0:
        raise fail("IDX header declares zero dimensions")
    if ndim is not None and rank != ndim:
        raise fail(f"expected a {ndim}-dimensional IDX file, header declares {rank} "
                   f"(magic 0x{payload[:4].hex()})")
    elem = IDX_DTYPES[type_code]
    if dtype is not None and elem != np.dtype(dtype):
        raise fail(f"expected element type {np.dtype(dtype)}, header declares {elem}")
    header_len = 4 + 4 * rank
    if len(payload) < header_len:
        raise fail(f"truncated IDX header ({len(payload)} of {header_len} bytes)")
    shape = struct.unpack(f">{rank}I", payload[4:header_len])
    expected = header_len + int(np.prod(shape, dtype=np.int64)) * elem.itemsize
    if len(payload) != expected:
        raise fail(f"size mismatch: header {shape} of {elem} implies {expected} bytes, "
                   f"file holds {len(payload)}")
    data = np.frombuffer(payload, dtype=elem, offset=header_len).reshape(shape)
    return data.astype(elem.newbyteorder("="), copy=False)


def read_idx(path: str | Path, *, sha256: str | None = None, ndim: int | None = None,
             dtype: np.dtype | None = None) -> np.ndarray:
    """Read an IDX (or IDX ``.gz``) file strictly, optionally checking its payload digest.

    ``sha256`` is compared with the SHA-256 of the *uncompressed* payload, before parsing.
    """
    payload = read_payload(path)
    if sha256 is not None:
        actual = digest_bytes(payload, "sha256")
        if actual != sha256:
            raise DataError(f"SHA-256 of the uncompressed payload is {actual}, expected "
                            f"{sha256} (corrupted or not the canonical file; pass "
                            f"verify=False to load a modified file on purpose)", path)
    return parse_idx(payload, path, ndim=ndim, dtype=dtype)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (any dtype of :data:`IDX_DTYPES`, at most 255 dims)."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"dtype {array.dtype} has no IDX type code")
    code, dtype = codes[native], IDX_DTYPES[codes[native]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> str:
    """Write ``array`` as an IDX file (gzipped, reproducibly, if the name ends in ``.gz``).

    Returns the SHA-256 of the uncompressed payload, the digest :func:`read_idx` checks.
    """
    path = Path(path)
    payload = encode_idx(array)
    path.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)
    return digest_bytes(payload)
