"""The Fashion-MNIST subset shipped inside the package (works offline, no downloads).

``embedded/fashion_mnist_subset.npz`` holds 2,000 training and 500 test images (200 and
50 per class) taken from the real Fashion-MNIST (Zalando, MIT licence) by
:mod:`nobound.data.build_embedded`; provenance and source checksums are recorded in
``embedded/README.md``. It is meant for examples, smoke tests and quick experiments, not
for reporting results. Loading checks every array against the SHA-256 recorded here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .checksums import digest_bytes
from .errors import DataError

EMBEDDED_PATH = Path(__file__).resolve().parent / "embedded" / "fashion_mnist_subset.npz"

#: SHA-256 of each array's C-order bytes, as printed by ``build_embedded``.
EMBEDDED_SHA256: dict[str, str] = {
    "train_images": "6c59094797e4bc9e7232843d7bf5085c15b67423354dab959246e3e5faa16517",
    "train_labels": "da01741fd7f7b6c457c1145f1c3363c543fd89efe01e31ff93c18850342e776b",
    "test_images": "8290027af94aca7e3fc849f33dfc396c78f36427f84a8cde695ad92490d3e4f1",
    "test_labels": "5607b0a13ea6dabee23ada2f03082e47bc85231466a1eaa3ec96f7844721945a",
}


def load_embedded(split: str, *, verify: bool = True, path: str | Path = EMBEDDED_PATH
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One split of the embedded subset: uint8 ``(N, 1, 28, 28)`` and int64 labels."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    except FileNotFoundError:
        raise DataError("embedded dataset file missing from the installation "
                        "(regenerate it with python -m nobound.data.build_embedded)",
                        path) from None
    except Exception as exc:
        raise DataError(f"cannot read embedded dataset ({type(exc).__name__}: {exc})",
                        path) from exc
    if verify:
        for key, array in ((f"{split}_images", images), (f"{split}_labels", labels)):
            expected = EMBEDDED_SHA256.get(key)
            actual = digest_bytes(np.ascontiguousarray(array).tobytes())
            if expected is not None and actual != expected:
                raise DataError(f"array {key} has SHA-256 {actual}, expected {expected}", path)
    if images.ndim != 3 or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise DataError(f"unexpected array layout {images.shape}/{labels.shape}", path)
    return images[:, None], labels.astype(np.int64)
