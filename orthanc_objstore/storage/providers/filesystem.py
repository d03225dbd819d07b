"""A file-system store: one file per key under a root folder (the file-system side of hybrid mode).

Writes go to a temporary file in the same folder, are optionally fsync'ed, then renamed over the
final name, so a reader never sees a half-written file and a failed write leaves nothing behind.
Deleting a file also removes its parent folders when they become empty (as Orthanc does).
A file has no metadata: ``owner`` is accepted and ignored (the file-system side cannot tell a swapped
file; the hybrid move checks the index's MD5 instead, and the A3 format authenticates the owner).
"""

import os
import tempfile

from ...errors import IntegrityError, NotFound, PermissionDenied, StoreError
from ..protocol import Owner, check_range


class FileSystemStore:
    records_owner = False  # a file has no metadata (see the module docstring)

    def __init__(self, root: str, fsync: bool = True):
        self.root = os.path.abspath(root)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"FileSystemStore({self.root!r})"

    def path(self, key: str) -> str:
        """The file holding ``key``; keys cannot escape the root."""
        parts = key.split("/")
        if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"invalid key {key!r} for the file-system store")
        return os.path.join(self.root, *parts)

    def put(self, key: str, data: bytes | bytearray, *, owner: Owner | None = None) -> None:
        path = self.path(key)
        folder = os.path.dirname(path)
        with _translated(key):
            fd, temporary = _temporary_file(folder)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    if self.fsync:
                        file.flush()
                        os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                _remove_quietly(temporary)
                raise

    def get(self, key: str, *, owner: Owner | None = None) -> bytes:
        with _translated(key), open(self.path(key), "rb") as file:
            return file.read()

    def get_range(self, key: str, start: int, length: int, *, owner: Owner | None = None) -> bytes:
        check_range(start, length)
        with _translated(key), open(self.path(key), "rb") as file:
            file.seek(start)
            data = file.read(length)
        if len(data) != length:
            raise IntegrityError(f"range {start}+{length} is past the end of {key!r}", key)
        return data

    def head(self, key: str) -> int:
        with _translated(key):
            return os.stat(self.path(key)).st_size

    def delete(self, key: str) -> None:
        path = self.path(key)
        with _translated(key):
            try:
                os.remove(path)
            except FileNotFoundError:
                return
        folder = os.path.dirname(path)
        for _ in range(key.count("/")):
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)

    def describe(self, key: str) -> str:
        return self.path(key)


class _translated:
    """Turns OSError into the store's error vocabulary."""

    def __init__(self, key):
        self.key = key

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if exc is None or not isinstance(exc, OSError):
            return False
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            raise NotFound(f"no file for {self.key!r}", self.key) from exc
        if isinstance(exc, PermissionError):
            raise PermissionDenied(f"permission denied on {self.key!r}", self.key) from exc
        raise StoreError(f"file-system error on {self.key!r}: {exc.strerror}", self.key) from exc


def _temporary_file(folder, attempts=10):
    """A new temporary file in ``folder``, created with its parents. A concurrent delete may remove an
    empty parent between the two steps (deletes prune empty folders): then try again."""
    for attempt in range(attempts):
        try:
            os.makedirs(folder, exist_ok=True)
            return tempfile.mkstemp(dir=folder, prefix=".tmp-")
        except (FileNotFoundError, FileExistsError):
            if attempt == attempts - 1:
                raise


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass
