"""The durable queue of deferred deletions: a journal file on the local disk, appended, acknowledged, compacted.

One file, ``deletions.jsonl``, one JSON object a line:

* ``{"q": id, "s": storage, "k": key, "u": uuid}``: the object ``key`` of storage ``storage``
  (``object-storage`` / ``file-system``) is to be deleted; it was queued by the remove callback of
  attachment ``uuid``;
* ``{"d": [id, ...]}``: those entries are done (their objects are deleted).

Every append is written and flushed before ``append`` returns: once the remove callback has returned,
the entry is in the operating system's hands and survives Orthanc being killed (SIGKILL). ``sync``
(called by the drainer before it deletes anything, and by ``close``) also fsyncs it, so what has been
deleted was on the disk first. A power cut can lose only what was appended since the last ``sync``
(milliseconds while the drainer is busy); ``orthanc-objstore verify --orphans`` finds such leftovers.

When most of the file is acknowledged entries, ``compact`` rewrites it with the pending entries only
(a temporary file, fsync'd, renamed over the journal). A line cut by a crash (the last one) is ignored
at the next start and cut off the file. A ``flock`` on the journal refuses a second process: two Orthancs
sharing one folder must have distinct ``DatabaseServerIdentifier`` (each then has its own sub-folder).

Thread-safe; the lock is held only for local file writes, never across network I/O.
"""

import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError

log = logging.getLogger("orthanc_objstore")

JOURNAL_NAME = "deletions.jsonl"
COMPACT_AFTER = 5000  # acknowledged entries in the file before it may be compacted


@dataclass(frozen=True)
class Entry:
    """One object to delete: ``key`` in storage ``storage``, queued for attachment ``uuid``."""

    id: int
    storage: str
    key: str
    uuid: str


class DeletionJournal:
    """The queue's durable state in ``folder`` (created if needed). See the module docstring."""

    def __init__(self, folder: str, fsync: bool = True):
        self.folder = folder
        self.path = os.path.join(folder, JOURNAL_NAME)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._pending: dict[int, Entry] = {}
        self._acknowledged_in_file = 0
        self._next_id = 1
        try:
            os.makedirs(folder, exist_ok=True)
            self._lock_file = open(os.path.join(folder, ".lock"), "a")
        except OSError as exc:
            raise ConfigError(f"DelayedDeletionFolder: cannot create or write the folder {folder!r} of the "
                              f"deferred deletions ({exc.strerror}); make it writable by Orthanc, set another "
                              "folder, or set \"DelayedDeletion\": false") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise ConfigError(f"DelayedDeletionFolder: the deferred deletions in {folder!r} are used by another "
                              "running Orthanc; give each Orthanc its own DatabaseServerIdentifier (or its own "
                              "DelayedDeletionFolder)") from None
        self._load()
        self._file = open(self.path, "a")

    def _load(self) -> None:
        """Replays the journal; cuts a last line left incomplete by a crash."""
        try:
            with open(self.path, "rb") as file:
                content = file.read()
        except FileNotFoundError:
            return
        good = content.rfind(b"\n") + 1
        if good < len(content):
            log.warning("deferred deletions: the last line of %s was cut by a crash; ignored", self.path)
            with open(self.path, "r+b") as file:
                file.truncate(good)
        for line in content[:good].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("deferred deletions: an unreadable line of %s is ignored", self.path)
                continue
            if "q" in record:
                entry = Entry(int(record["q"]), str(record["s"]), str(record["k"]), str(record.get("u", "")))
                self._pending[entry.id] = entry
                self._next_id = max(self._next_id, entry.id + 1)
            elif "d" in record:
                for done in record["d"]:
                    if self._pending.pop(int(done), None) is not None:
                        self._acknowledged_in_file += 1

    def append(self, items: Iterable[tuple[str, str, str]]) -> list[Entry]:
        """Queues ``(storage, key, uuid)`` items; returns their entries once written and flushed."""
        with self._lock:
            if self._file.closed:
                raise OSError("the deferred deletions' journal is closed (Orthanc is stopping)")
            entries = []
            for storage, key, uuid in items:
                entries.append(Entry(self._next_id, storage, key, uuid))
                self._next_id += 1
            self._file.write("".join(json.dumps({"q": e.id, "s": e.storage, "k": e.key, "u": e.uuid},
                                                separators=(",", ":")) + "\n" for e in entries))
            self._file.flush()
            for entry in entries:
                self._pending[entry.id] = entry
        return entries

    def acknowledge(self, ids: Iterable[int]) -> None:
        """Marks entries done (their objects are deleted); compacts the file when it is mostly done entries."""
        with self._lock:
            if self._file.closed:  # stopped meanwhile: deleted again at the next start (deletes are idempotent)
                return
            done = [i for i in ids if self._pending.pop(i, None) is not None]
            if not done:
                return
            self._file.write(json.dumps({"d": done}, separators=(",", ":")) + "\n")
            self._file.flush()
            self._acknowledged_in_file += len(done)
            if self._acknowledged_in_file >= COMPACT_AFTER and self._acknowledged_in_file > 4 * len(self._pending):
                self._compact_locked()

    def sync(self) -> None:
        """fsyncs what has been appended (outside the lock: a remove callback never waits on it)."""
        if not self.fsync:
            return
        with self._lock:
            file = self._file
        try:
            os.fsync(file.fileno())
        except (OSError, ValueError):  # replaced by a compaction meanwhile, which fsyncs its own file
            pass

    def pending(self) -> list[Entry]:
        """The entries not yet acknowledged, oldest first."""
        with self._lock:
            return list(self._pending.values())

    def count(self) -> int:
        with self._lock:
            return len(self._pending)

    def compact(self) -> None:
        with self._lock:
            self._compact_locked()

    def _compact_locked(self) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as file:
                for e in self._pending.values():
                    file.write(json.dumps({"q": e.id, "s": e.storage, "k": e.key, "u": e.uuid},
                                          separators=(",", ":")) + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
        self._fsync_folder()
        self._file.close()
        self._file = open(self.path, "a")
        self._acknowledged_in_file = 0

    def _fsync_folder(self) -> None:
        try:
            fd = os.open(self.folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        """Flushes, fsyncs and closes the journal, compacting it when it has done entries."""
        with self._lock:
            if self._file.closed:
                return
            if self._acknowledged_in_file:
                self._compact_locked()
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            self._lock_file.close()
