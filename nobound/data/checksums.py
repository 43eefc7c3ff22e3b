"""Known checksums of the canonical dataset files, and helpers to compute them.

MNIST and Fashion-MNIST are checked by the SHA-256 of the *uncompressed* IDX payload, not
of the ``.gz`` file: mirrors (and Debian's ``dataset-fashion-mnist`` package) recompress the
files, which changes the gzip bytes but not the data. CIFAR-10 is checked by the MD5 sums
the dataset's authors publish (the archive) and the per-batch MD5 sums used throughout the
ecosystem (torchvision); TinyImageNet by the MD5 of the official zip.

The tables are plain dictionaries so that tests (and users with a private mirror of a
modified dataset) can substitute their own digests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: SHA-256 of the uncompressed IDX payloads, keyed by dataset then by ``.gz`` file name.
IDX_SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte.gz":
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte.gz":
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte.gz":
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    # Computed from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1
    # (/usr/share/datasets/fashion-mnist), i.e. zalandoresearch/fashion-mnist data/fashion.
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz":
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte.gz":
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte.gz":
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte.gz":
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

#: MD5 of the official CIFAR-10 python archive (published on the dataset's page).
CIFAR10_ARCHIVE_MD5: dict[str, str] = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
}

#: MD5 of the pickled batch files inside ``cifar-10-batches-py``.
CIFAR10_BATCH_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

#: MD5 of the official TinyImageNet zip (cs231n.stanford.edu).
TINYIMAGENET_ARCHIVE_MD5: dict[str, str] = {
    "tiny-imagenet-200.zip": "90528d7ca1a48142e341f4ef8d21d0de",
}

_CHUNK = 1 << 20


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    """Hex digest of an in-memory payload."""
    return hashlib.new(algorithm, data).hexdigest()


def digest_file(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
