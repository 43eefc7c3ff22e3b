"""Downloading datasets from their official locations, verified and atomic.

Every file is streamed to a hidden temporary file next to its destination, checked
(length against ``Content-Length``, then the dataset checksum), and only then moved into
place with :func:`os.replace`. A failed, truncated or corrupted download therefore leaves
nothing behind, and a half-written file can never be mistaken for data.

Archives (CIFAR-10's ``.tar.gz``, TinyImageNet's ``.zip``) are MD5-checked, extracted into
a temporary directory with path-traversal checks, and the dataset folder is renamed into
the data root as a whole.

``base_url`` replaces the default location (a mirror, or a local ``http.server`` in tests).
From the shell: ``python -m nobound.data.download mnist cifar10 --data-dir ~/data``.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from .checksums import CIFAR10_ARCHIVE_MD5, IDX_SHA256, TINYIMAGENET_ARCHIVE_MD5, digest_file
from .errors import DataError
from .idx import read_idx
from .locate import download_root
from .mnist import IDX_FILES
from .specs import get_spec

DEFAULT_BASE_URLS: dict[str, str] = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
    "tinyimagenet": "http://cs231n.stanford.edu/",
}

#: ``name -> (archive file name, its MD5 table)`` for datasets shipped as one archive.
ARCHIVES: dict[str, tuple[str, dict[str, str]]] = {
    "cifar10": ("cifar-10-python.tar.gz", CIFAR10_ARCHIVE_MD5),
    "tinyimagenet": ("tiny-imagenet-200.zip", TINYIMAGENET_ARCHIVE_MD5),
}

_CHUNK = 1 << 20


def fetch(url: str, dest: str | Path, *, check: Callable[[Path], object] | None = None,
          timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically; ``check(tmp_path)`` may raise to reject it.

    Raises :class:`DataError` naming the URL and the destination on network failure,
    truncation or a failed check; the temporary file is always removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name.split('.')[0]}.",
                                suffix=".part" + "".join(dest.suffixes))
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    expected = response.headers.get("Content-Length")
                    received = 0
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        received += len(chunk)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    exc.close()  # an HTTPError holds the open response
                raise DataError(f"download of {url} failed ({exc})", dest) from exc
        if expected is not None and received != int(expected):
            raise DataError(f"download of {url} truncated: got {received} of {expected} "
                            f"bytes", dest)
        if check is not None:
            try:
                check(tmp)
            except DataError as exc:
                raise DataError(f"download of {url} rejected: {exc}", dest) from exc
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _md5_check(md5: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        actual = digest_file(path, "md5")
        if actual != md5:
            raise DataError(f"MD5 is {actual}, expected {md5}", path)
    return check


def _safe_name(name: str, archive: Path) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or parts[0] == "/" or ".." in parts or ":" in parts[0]:
        raise DataError(f"archive member {name!r} would escape the extraction folder", archive)


def extract_archive(archive: str | Path, dest: str | Path) -> None:
    """Extract a ``.tar.gz``/``.tgz``/``.tar`` or ``.zip`` into ``dest``.

    The compressed stream's CRCs are checked before anything is written, and absolute
    paths, ``..`` components and (in tars) links and device files are refused.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _safe_name(name, archive)
                bad = zf.testzip()
                if bad is not None:
                    raise DataError(f"CRC mismatch in archive member {bad!r}", archive)
                zf.extractall(dest)
            return
        with open(archive, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        if gzipped:  # tarfile stops before the gzip CRC; check the whole stream first
            with gzip.open(archive, "rb") as f:
                while f.read(_CHUNK):
                    pass
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _safe_name(m.name, archive)
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"archive member {m.name!r} is not a regular file", archive)
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(dest, members=members, **extra)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"cannot extract archive ({exc})", archive) from exc


def _download_idx(name: str, folder: Path, base_url: str, verify: bool, force: bool,
                  timeout: float) -> None:
    for image_file, label_file in IDX_FILES.values():
        for fname, ndim in ((image_file, 3), (label_file, 1)):
            sha = IDX_SHA256[name][fname] if verify else None

            def check(path: Path, sha: str | None = sha, ndim: int = ndim) -> None:
                read_idx(path, sha256=sha, ndim=ndim)

            dest = folder / fname
            if dest.exists() and not force:
                try:
                    check(dest)
                    continue
                except DataError:
                    pass  # a corrupted local copy is replaced
            fetch(base_url + fname, dest, check=check, timeout=timeout)


def _download_archive(name: str, root: Path, folder: Path, base_url: str, verify: bool,
                      force: bool, timeout: float) -> None:
    archive_name, md5s = ARCHIVES[name]
    if folder.exists() and not force:
        return
    archive = root / archive_name
    check = _md5_check(md5s[archive_name]) if verify else None
    user_archive = archive.exists()  # e.g. downloaded by hand: used if valid, never deleted
    try:
        if user_archive and check is not None:
            try:
                check(archive)
            except DataError:
                user_archive = False
        if not user_archive:
            fetch(base_url + archive_name, archive, check=check, timeout=timeout)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}.extract-"))
        try:
            extract_archive(archive, staging)
            extracted = staging / folder.name
            if not extracted.is_dir():
                raise DataError(f"archive does not contain a {folder.name}/ folder", archive)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(extracted, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if not user_archive:
            archive.unlink(missing_ok=True)


def download_dataset(name: str, data_dir: str | Path | None = None, *,
                     base_url: str | None = None, verify: bool = True, force: bool = False,
                     timeout: float = 60.0) -> Path:
    """Download dataset ``name`` into ``<root>/<folder>`` and return that folder.

    ``root`` is ``data_dir``, else the first ``NOBOUND_DATA`` entry, else the cache
    directory. Existing valid files are kept unless ``force``. ``verify=False`` skips the
    checksum comparison (for mirrors of modified data), never the format checks.
    """
    spec = get_spec(name)
    if spec.name not in DEFAULT_BASE_URLS:
        raise ValueError(f"dataset {spec.name!r} cannot be downloaded")
    base_url = base_url or DEFAULT_BASE_URLS[spec.name]
    if not base_url.endswith("/"):
        base_url += "/"
    root = download_root(data_dir)
    folder = root / spec.folder
    root.mkdir(parents=True, exist_ok=True)
    if spec.name in ARCHIVES:
        _download_archive(spec.name, root, folder, base_url, verify, force, timeout)
    else:
        _download_idx(spec.name, folder, base_url, verify, force, timeout)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m nobound.data.download NAME... [options]``."""
    parser = argparse.ArgumentParser(prog="python -m nobound.data.download",
                                     description="Download and verify nobound datasets.")
    parser.add_argument("names", nargs="+", choices=sorted(DEFAULT_BASE_URLS))
    parser.add_argument("--data-dir", help="data root (default: $NOBOUND_DATA or the cache)")
    parser.add_argument("--base-url", help="mirror to download from instead of the default")
    parser.add_argument("--no-verify", action="store_true", help="skip checksum comparison")
    parser.add_argument("--force", action="store_true", help="download even if present")
    args = parser.parse_args(argv)
    for name in args.names:
        folder = download_dataset(name, args.data_dir, base_url=args.base_url,
                                  verify=not args.no_verify, force=args.force)
        print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
