"""Fixtures for the data-layer tests: generators of small files in the official formats
(IDX .gz, CIFAR-10 python pickles, TinyImageNet folders) and a local HTTP server.

Nothing here touches the internet; the HTTP server binds to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import http.server
import io
import pickle
import struct
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from nobound.data.idx import write_idx

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def _hermetic_env(tmp_path, monkeypatch):
    """No test sees the user's NOBOUND_DATA or download cache."""
    monkeypatch.delenv("NOBOUND_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle (protocol 2) wrote for the official CIFAR batches:
    ``str`` and ``bytes`` as BINSTRING opcodes and NumPy globals under
    ``numpy.core.multiarray``, so the reader is tested on the real-world encoding."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj, name=None):
        module = "numpy" if obj in (np.ndarray, np.dtype) else obj.__module__
        module = module.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str
    dispatch[type] = save_global


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


@pytest.fixture
def make_mnist():
    """``make_mnist(folder, n_train, n_test) -> (arrays, sha256 table)``: a fake MNIST."""

    def make(folder: Path, n_train: int = 12, n_test: int = 7, seed: int = 0):
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        arrays = {
            "train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                      rng.integers(0, 10, n_train, dtype=np.uint8)),
            "test": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                     rng.integers(0, 10, n_test, dtype=np.uint8)),
        }
        digests = {}
        for (x, y), (fx, fy) in zip(arrays.values(), (MNIST_FILES[:2], MNIST_FILES[2:]),
                                    strict=True):
            digests[fx] = write_idx(folder / fx, x)
            digests[fy] = write_idx(folder / fy, y)
        return arrays, digests

    return make


@pytest.fixture
def make_cifar():
    """``make_cifar(folder, per_batch) -> {split: (pixels NCHW, labels)}``, written as
    Python 2 protocol-2 pickles like the official files."""

    def make(folder: Path, per_batch: int = 6, seed: int = 0):
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        out = {"train": ([], []), "test": ([], [])}
        names = [(f"data_batch_{i}", "train") for i in range(1, 6)] + [("test_batch", "test")]
        for name, split in names:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, per_batch)]
            batch = {"batch_label": name, "labels": labels, "data": data,
                     "filenames": [f"img_{i}.png" for i in range(per_batch)]}
            (folder / name).write_bytes(py2_pickle(batch))
            out[split][0].append(data.reshape(-1, 3, 32, 32))
            out[split][1].append(np.asarray(labels))
        return {k: (np.concatenate(x), np.concatenate(y)) for k, (x, y) in out.items()}

    return make


@pytest.fixture
def make_tinyimagenet():
    """``make_tinyimagenet(folder, wnids, n_train, n_val)``: a tiny-imagenet-200 tree of
    flat-coloured 64x64 JPEGs; returns ``{split: (colours (N, 3), labels)}``."""
    image_module = pytest.importorskip("PIL.Image")

    def make(folder: Path, wnids=("n02", "n01", "n03"), n_train: int = 3, n_val: int = 5,
             seed: int = 0):
        rng = np.random.default_rng(seed)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
        order = sorted(wnids)
        colours, labels = [], []
        for label, wnid in enumerate(order):
            images = folder / "train" / wnid / "images"
            images.mkdir(parents=True)
            (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
            for i in range(n_train):
                colour = rng.integers(0, 256, 3)
                img = image_module.new("RGB", (64, 64), tuple(int(c) for c in colour))
                img.save(images / f"{wnid}_{i}.JPEG", quality=95)
                colours.append(colour)
                labels.append(label)
        val_colours, val_labels, lines = [], [], []
        (folder / "val" / "images").mkdir(parents=True)
        for i in range(n_val):
            label = int(rng.integers(0, len(order)))
            colour = rng.integers(0, 256, 3)
            img = image_module.new("RGB", (64, 64), tuple(int(c) for c in colour))
            img.save(folder / "val" / "images" / f"val_{i}.JPEG", quality=95)
            lines.append(f"val_{i}.JPEG\t{order[label]}\t0\t0\t63\t63")
            val_colours.append(colour)
            val_labels.append(label)
        (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
        return {"train": (np.array(colours), np.array(labels)),
                "test": (np.array(val_colours), np.array(val_labels))}

    return make


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; paths under /truncated/ announce more bytes than they send."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path.startswith("/truncated/"):
            body = b"\x1f\x8b" + b"x" * 100
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) * 10))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def http_server(tmp_path):
    """``(base_url, folder)``: a local HTTP server on 127.0.0.1 serving ``folder``."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
