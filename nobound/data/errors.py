"""Exceptions raised by the data layer.

Every reader in :mod:`nobound.data` turns a malformed, truncated or unexpected input into a
:class:`DataError` whose message names the offending file, instead of returning silently
wrong arrays. ``DataError`` subclasses :class:`ValueError` so callers that already catch
``ValueError`` for bad inputs keep working.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file is missing, malformed, truncated or fails its checksum."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None and str(self.path) not in message:
            message = f"{self.path}: {message}"
        super().__init__(message)


class DatasetNotFoundError(DataError):
    """A dataset directory could not be found in any of the searched locations."""
