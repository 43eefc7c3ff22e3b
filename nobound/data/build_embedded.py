"""Regenerate the embedded Fashion-MNIST subset shipped in ``nobound/data/embedded/``.

Usage (after ``apt-get install dataset-fashion-mnist``, or with the four official IDX
files in ``<dir>``)::

    python -m nobound.data.build_embedded [--source DIR] [--out PATH]

The source files must match the canonical Fashion-MNIST checksums (they are verified).
The subset is the first ``200`` training and first ``50`` test images *of each class*, in
their original file order, so it is class-balanced (2,000 + 500 images) and entirely
determined by the source files: no random numbers are involved. The ``.npz`` is written
with fixed zip timestamps and a fixed member order, so the same source gives the same
bytes (given the same zlib); :mod:`nobound.data.embedded` checks the array contents
against SHA-256 digests recorded when the file was built.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .checksums import digest_bytes
from .embedded import EMBEDDED_PATH
from .locate import find_dataset_dir
from .mnist import read_mnist_split

TRAIN_PER_CLASS = 200
TEST_PER_CLASS = 50


def balanced_indices(labels: np.ndarray, per_class: int, num_classes: int = 10) -> np.ndarray:
    """Indices of the first ``per_class`` examples of every class, in ascending order."""
    chosen = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)[:per_class]
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} examples, {per_class} needed")
        chosen.append(idx)
    return np.sort(np.concatenate(chosen))


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` with reproducible bytes, atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w") as zf:
            for key in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]),
                                          allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue(), compresslevel=9)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def build(source: str | Path, out: str | Path = EMBEDDED_PATH) -> dict[str, str]:
    """Build the subset from the canonical files in ``source``; returns array digests."""
    arrays: dict[str, np.ndarray] = {}
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        pixels, labels = read_mnist_split(source, split, family="fashion-mnist", verify=True)
        idx = balanced_indices(labels, per_class)
        arrays[f"{split}_images"] = pixels[idx, 0]
        arrays[f"{split}_labels"] = labels[idx].astype(np.uint8)
        arrays[f"{split}_indices"] = idx.astype(np.int32)
    write_npz(out, arrays)
    return {key: digest_bytes(np.ascontiguousarray(a).tobytes()) for key, a in arrays.items()}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m nobound.data.build_embedded",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="folder with the Fashion-MNIST IDX files "
                        "(default: searched like load_dataset('fashion-mnist'))")
    parser.add_argument("--out", default=str(EMBEDDED_PATH), help="output .npz")
    args = parser.parse_args(argv)
    source = Path(args.source) if args.source else find_dataset_dir("fashion-mnist")
    digests = build(source, args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes) from {source}")
    for key, digest in sorted(digests.items()):
        print(f"  {key}: {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
