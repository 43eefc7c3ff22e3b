"""TinyImageNet-200 in the official folder layout (``tiny-imagenet-200``).

Layout::

    tiny-imagenet-200/wnids.txt                       200 WordNet ids, one per line
    tiny-imagenet-200/train/<wnid>/images/*.JPEG      500 images per class
    tiny-imagenet-200/val/val_annotations.txt         "<file>\\t<wnid>\\t<bbox...>" lines
    tiny-imagenet-200/val/images/*.JPEG               10,000 images

The official test split has no labels, so the labelled ``val`` split serves as the test
split (``split="test"`` and ``split="val"`` are the same). Class ``k`` is the ``k``-th wnid
in *sorted* order, which matches torchvision's ``ImageFolder`` (and hence CTBench). Train
images are ordered by class, then file name; val images follow the annotation file.

JPEG decoding needs Pillow (an optional dependency); greyscale images are converted to RGB.
Every image must be 64 x 64. ``verify=True`` additionally requires the canonical counts
(200 classes, 500 train images each, 10,000 val images).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

IMAGE_SIZE = 64
CANONICAL_COUNTS = {"classes": 200, "train_per_class": 500, "val": 10_000}


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("decoding TinyImageNet JPEG files needs Pillow, which is not "
                          "installed: pip install pillow") from None
    return Image


def read_wnids(directory: str | Path) -> list[str]:
    """The class ids of ``wnids.txt``, sorted (class ``k`` is ``wnids[k]``)."""
    path = Path(directory) / "wnids.txt"
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        raise DataError("wnids.txt not found (not a tiny-imagenet-200 folder?)", path) from None
    wnids = sorted(lines)
    if not wnids:
        raise DataError("wnids.txt lists no classes", path)
    if len(set(wnids)) != len(wnids):
        raise DataError("wnids.txt lists a class twice", path)
    return wnids


def _train_files(directory: Path, wnids: Sequence[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for label, wnid in enumerate(wnids):
        folder = directory / "train" / wnid / "images"
        if not folder.is_dir():
            raise DataError(f"missing train folder for class {wnid}", folder)
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
        if not found:
            raise DataError(f"no JPEG images for class {wnid}", folder)
        files += found
        labels += [label] * len(found)
    return files, labels


def _val_files(directory: Path, wnids: Sequence[str]) -> tuple[list[Path], list[int]]:
    path = directory / "val" / "val_annotations.txt"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError("val annotations not found", path) from None
    index = {wnid: k for k, wnid in enumerate(wnids)}
    files, labels = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"line {lineno}: expected '<file>\\t<wnid>...' with a wnid from "
                            f"wnids.txt, got {line!r}", path)
        files.append(directory / "val" / "images" / fields[0])
        labels.append(index[fields[1]])
    if not files:
        raise DataError("val annotations list no images", path)
    return files, labels


def decode_jpegs(files: Sequence[Path], size: int = IMAGE_SIZE,
                 workers: int | None = None) -> np.ndarray:
    """Decode image files into a uint8 ``(N, 3, size, size)`` array (threads, Pillow)."""
    image_module = _pillow()
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)

    def decode(i: int) -> None:
        path = files[i]
        try:
            with image_module.open(path) as img:
                array = np.asarray(img.convert("RGB"))
        except FileNotFoundError:
            raise DataError("image file not found", path) from None
        except Exception as exc:
            raise DataError(f"cannot decode image ({type(exc).__name__}: {exc})",
                            path) from exc
        if array.shape != (size, size, 3):
            raise DataError(f"image is {array.shape[1]}x{array.shape[0]}, expected "
                            f"{size}x{size}", path)
        out[i] = array

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(decode, range(len(files))):
            pass
    return out.transpose(0, 3, 1, 2).copy()


def read_tinyimagenet_split(directory: str | Path, split: str, *, verify: bool = True,
                            limit: int | None = None
                            ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a TinyImageNet split: uint8 ``(N, 3, 64, 64)``, int64 labels, sorted wnids.

    With ``limit`` only the first ``limit`` images (in the order described above) are
    decoded; the canonical-count check of ``verify`` still covers the whole listing.
    """
    directory = Path(directory)
    wnids = read_wnids(directory)
    if split == "train":
        files, labels = _train_files(directory, wnids)
    elif split in ("val", "test"):
        files, labels = _val_files(directory, wnids)
    else:
        raise ValueError(f"unknown split {split!r}; expected 'train', 'val' or 'test'")
    if verify:
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(wnids))
        canonical = len(wnids) == CANONICAL_COUNTS["classes"] and (
            bool(np.all(counts == CANONICAL_COUNTS["train_per_class"])) if split == "train"
            else len(files) == CANONICAL_COUNTS["val"])
        if not canonical:
            raise DataError(f"not the canonical TinyImageNet-200: {len(wnids)} classes and "
                            f"{len(files)} {split} images (expected 200 classes, 500 train "
                            f"images each, 10,000 val images); pass verify=False to load it "
                            f"anyway", directory)
    if limit is not None:
        files, labels = files[:limit], labels[:limit]
    return decode_jpegs(files), np.asarray(labels, dtype=np.int64), wnids
