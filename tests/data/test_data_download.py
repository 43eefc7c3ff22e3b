"""Downloads from a local HTTP server on 127.0.0.1 (no internet): verified, atomic, and a
rejected download leaves nothing behind."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nobound.data import DataError, download_dataset, load_dataset
from nobound.data import checksums as cs
from nobound.data.download import extract_archive, fetch, main

pytestmark = pytest.mark.network
REAL_MNIST = Path(os.environ.get("NOBOUND_DATA", "/work/shared/data").split(os.pathsep)[0],
                  "mnist")


def _leftovers(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_fetch_success_and_http_errors(http_server, tmp_path):
    url, served = http_server
    (served / "a.bin").write_bytes(b"hello")
    dest = tmp_path / "out" / "a.bin"
    assert fetch(url + "a.bin", dest).read_bytes() == b"hello"
    with pytest.raises(DataError, match="404") as info:
        fetch(url + "missing.bin", tmp_path / "out" / "b.bin")
    assert url + "missing.bin" in str(info.value)
    with pytest.raises(DataError, match="truncated"):
        fetch(url + "truncated/c.bin", tmp_path / "out" / "c.bin")
    assert _leftovers(tmp_path / "out") == ["a.bin"]


def test_mnist_download_verified(http_server, tmp_path, make_mnist, monkeypatch):
    url, served = http_server
    arrays, digests = make_mnist(served)
    monkeypatch.setitem(cs.IDX_SHA256, "mnist", digests)
    ds = load_dataset("mnist", "test", data_dir=tmp_path / "root", download=True, base_url=url)
    np.testing.assert_array_equal(ds.labels, arrays["test"][1])
    assert _leftovers(tmp_path / "root" / "mnist") == sorted(digests)
    # a second call keeps the verified files; a damaged local file is re-downloaded
    local = tmp_path / "root" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    local.write_bytes(b"garbage")
    download_dataset("mnist", tmp_path / "root", base_url=url)
    assert load_dataset("mnist", "test", data_dir=tmp_path / "root").labels.tolist() == \
        arrays["test"][1].tolist()


def test_corrupted_download_is_rejected_and_nothing_left(http_server, tmp_path, make_mnist,
                                                         monkeypatch):
    url, served = http_server
    _, digests = make_mnist(served)
    monkeypatch.setitem(cs.IDX_SHA256, "mnist", digests)
    target = served / "train-images-idx3-ubyte.gz"
    payload = bytearray(gzip.decompress(target.read_bytes()))
    payload[100] ^= 0xFF  # valid gzip, wrong content
    target.write_bytes(gzip.compress(bytes(payload)))
    root = tmp_path / "root"
    with pytest.raises(DataError, match="rejected.*SHA-256") as info:
        download_dataset("mnist", root, base_url=url)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert _leftovers(root / "mnist") == []
    target.write_bytes(target.read_bytes()[:-30])  # truncated gzip
    with pytest.raises(DataError, match="truncated gzip"):
        download_dataset("mnist", root, base_url=url, verify=False)
    assert _leftovers(root / "mnist") == []


@pytest.mark.skipif(not (REAL_MNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason="real MNIST not available")
def test_real_mnist_from_local_mirror(http_server, tmp_path, monkeypatch):
    """The canonical checksums accept the real files served by a mirror."""
    url, served = http_server
    for path in REAL_MNIST.glob("*.gz"):
        shutil.copy(path, served / path.name)  # into the server's tmp folder only
    monkeypatch.setenv("NOBOUND_DATA", str(tmp_path / "envroot"))
    assert main(["mnist", "--base-url", url]) == 0
    assert len(load_dataset("mnist", "test")) == 10000


def _tar_gz(source: Path, arcname: str, dest: Path) -> str:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(source, arcname=arcname)
    return cs.digest_file(dest, "md5")


def test_cifar_download_extracts_atomically(http_server, tmp_path, make_cifar, monkeypatch):
    url, served = http_server
    arrays = make_cifar(tmp_path / "src")
    md5 = _tar_gz(tmp_path / "src", "cifar-10-batches-py", served / "cifar-10-python.tar.gz")
    monkeypatch.setitem(cs.CIFAR10_ARCHIVE_MD5, "cifar-10-python.tar.gz", md5)
    root = tmp_path / "root"
    ds = load_dataset("cifar10", "test", data_dir=root, download=True, base_url=url,
                      verify=False)  # the generated batches are not the canonical ones
    np.testing.assert_array_equal(ds.pixels, arrays["test"][0])
    assert _leftovers(root) == sorted(["cifar-10-batches-py"] + [
        f"cifar-10-batches-py/{p.name}" for p in (tmp_path / "src").iterdir()])


def test_cifar_corrupted_archive_leaves_nothing(http_server, tmp_path, make_cifar, monkeypatch):
    url, served = http_server
    make_cifar(tmp_path / "src")
    archive = served / "cifar-10-python.tar.gz"
    md5 = _tar_gz(tmp_path / "src", "cifar-10-batches-py", archive)
    monkeypatch.setitem(cs.CIFAR10_ARCHIVE_MD5, "cifar-10-python.tar.gz", md5)
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    archive.write_bytes(bytes(raw))
    root = tmp_path / "root"
    with pytest.raises(DataError, match="MD5"):
        download_dataset("cifar10", root, base_url=url)
    assert _leftovers(root) == []
    with pytest.raises(DataError, match="extract"):
        download_dataset("cifar10", root, base_url=url, verify=False)
    assert _leftovers(root) == []


def test_tinyimagenet_zip_download(http_server, tmp_path, make_tinyimagenet, monkeypatch):
    url, served = http_server
    expected = make_tinyimagenet(tmp_path / "src" / "tiny-imagenet-200")
    with zipfile.ZipFile(served / "tiny-imagenet-200.zip", "w") as zf:
        for path in sorted((tmp_path / "src").rglob("*")):
            zf.write(path, path.relative_to(tmp_path / "src").as_posix())
    md5 = cs.digest_file(served / "tiny-imagenet-200.zip", "md5")
    monkeypatch.setitem(cs.TINYIMAGENET_ARCHIVE_MD5, "tiny-imagenet-200.zip", md5)
    ds = load_dataset("tinyimagenet", "test", data_dir=tmp_path / "root", download=True,
                      base_url=url, verify=False)
    np.testing.assert_array_equal(ds.labels, expected["test"][1])
    assert not (tmp_path / "root" / "tiny-imagenet-200.zip").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_archive_path_traversal_is_refused(tmp_path, name):
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="escape"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs/evil.txt").exists()
