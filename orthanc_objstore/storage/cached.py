"""The read cache: a wrapper store that keeps objects read from its inner store, bounded in memory and on disk.

``CachedStore(inner, cache)`` implements the store protocol (see ``protocol``) around the provider,
*below* the encryption layer, so that what it keeps is the bytes as stored (still encrypted when
encryption is on: a cache never becomes a plaintext copy of medical data).

- ``get``: a cached object is returned without a request; otherwise one request, whose result is
  kept. Concurrent ``get``s of one key share that one request (single flight): Orthanc's sequential
  reads and the prefetcher's parallel ones never read an object twice.
- ``get_range``: served from a cached (or in-flight) whole object when there is one; a range of an
  object the prefetcher announced (``ReadCache.expect``) is read whole once and kept, so that a
  header read before the frames does not cost a second request; any other range is read as a range.
- ``put`` and ``delete`` drop the key first. A written DICOM file (content type 1) is not kept (an
  upload must not flush what viewers read); other attachments are (small: Orthanc's JSON, DICOMweb's
  metadata caches, which are read soon after they are written). ``ReadCache.forget(uuid)`` drops
  every key of an attachment (Orthanc's remove callback, before any deferred delete).
- ``owner``: an entry remembers the owner its request was checked for; a read for another owner
  bypasses the entry and asks the inner store, which checks it as always. A disk entry also remembers
  what the inner store's checks accepted of objects without an owner record (``protocol.owner_scope``:
  OwnerlessObjects and the owner mark); after a start-up under other checks it is dropped, never served
  (an object read under ``Accept`` must be refused from the cache too once ``AcceptBeforeMark`` or
  ``Refuse`` are back).

``ReadCache`` holds a ``MemoryCache`` (LRU by bytes, entries above ``max_entry`` never kept) and an
optional ``DiskCache`` (files named by a hash of the key, each with the SHA-256 of its body: a
damaged entry is dropped and read again, never served; evicts by size; survives restarts). Locks
guard the indexes only, never I/O. ``CacheStats`` counts hits, misses, bytes, evictions and
prefetches issued, used and wasted (a prefetched entry evicted or dropped before any read).
"""

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import StoreError
from .protocol import (
    ColdState,
    Owner,
    Store,
    batch_size,
    check_range,
    cold_state,
    delete_keys,
    exact_range,
    owner_checks,
    owner_scope,
    request_restore,
    restore_tiers,
)

log = logging.getLogger(__name__)

_prefetch_thread = threading.local()
KEEP_WRITES_EXCEPT = 1  # writes of every other content type are kept (small: JSON, headers, DICOMweb's caches)


@contextmanager
def prefetching():
    """Marks the reads made by this thread inside the block as prefetches (the prefetcher's workers)."""
    _prefetch_thread.active = True
    try:
        yield
    finally:
        _prefetch_thread.active = False


def _is_prefetch() -> bool:
    return getattr(_prefetch_thread, "active", False)


@dataclass
class CacheStats:
    """Counters of one ``ReadCache`` (read by the metrics as gauges; updated under the cache's lock)."""

    hits: int = 0
    misses: int = 0
    memory_evictions: int = 0
    disk_hits: int = 0
    disk_evictions: int = 0
    disk_damaged: int = 0
    prefetch_issued: int = 0
    prefetch_used: int = 0
    prefetch_wasted: int = 0
    prefetch_wasted_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)


@dataclass
class _Entry:
    data: bytes
    owner: str | None  # Owner.metadata_value() the inner store checked, or None (read without owner)
    prefetched: bool  # filled by a prefetch and not read since


class MemoryCache:
    """Objects by key, least recently used first out, at most ``capacity`` bytes in all."""

    def __init__(self, capacity: int, max_entry: int, stats: CacheStats):
        self.capacity = capacity
        self.max_entry = min(max_entry, capacity)
        self.stats = stats
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: _Entry) -> bool:
        """Keeps ``entry`` (evicting the oldest ones); False when it is too large to be kept."""
        if len(entry.data) > self.max_entry:
            return False
        evicted = []
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old.data)
            self._entries[key] = entry
            self._size += len(entry.data)
            while self._size > self.capacity:
                _, oldest = self._entries.popitem(last=False)
                self._size -= len(oldest.data)
                evicted.append(oldest)
        _count_dropped(self.stats, evicted, "memory_evictions")
        return True

    def discard(self, key: str) -> _Entry | None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._size -= len(entry.data)
            return entry


def _count_dropped(stats: CacheStats, entries, counter: str) -> None:
    if not entries:
        return
    wasted = [entry for entry in entries if entry.prefetched]
    stats.add(**{counter: len(entries)}, prefetch_wasted=len(wasted),
              prefetch_wasted_bytes=sum(len(entry.data) for entry in wasted))


class DiskCache:
    """Objects by key in ``folder``, at most ``capacity`` bytes of bodies, least recently used first out.

    One file per object, ``<folder>/<h[:2]>/<h>`` where ``h`` is the SHA-256 of the key: a JSON line
    (key, owner, owner scope, size, SHA-256 of the body), then the body as stored. Written to a temporary
    file and renamed, so a crash leaves no half entry under the final name. At start the folder is scanned
    (oldest access first); an entry that does not match its line when read is deleted and reported
    as a miss; so is one of another ``owner_scope`` (kept under other owner checks), silently."""

    def __init__(self, folder: str, capacity: int, stats: CacheStats):
        self.folder = folder
        self.capacity = capacity
        self.stats = stats
        self.owner_scope = ""  # protocol.owner_scope of the store behind the cache (CachedStore sets it)
        self._sizes: OrderedDict[str, int] = OrderedDict()  # file name -> body size, by last access
        self._size = 0
        self._lock = threading.Lock()
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self._scan()

    @property
    def size(self) -> int:
        return self._size

    def _scan(self) -> None:
        found = []
        for sub in os.listdir(self.folder):
            path = os.path.join(self.folder, sub)
            if len(sub) != 2 or not os.path.isdir(path):
                continue
            for name in os.listdir(path):
                full = os.path.join(path, name)
                if name.endswith(".tmp"):
                    _unlink(full)
                    continue
                try:
                    status = os.stat(full)
                except OSError:
                    continue
                found.append((status.st_atime, name, status.st_size))
        for _, name, size in sorted(found):
            self._sizes[name] = size
            self._size += size
        self._evict()

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name[:2], name)

    @staticmethod
    def _name(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def get(self, key: str) -> _Entry | None:
        name = self._name(key)
        with self._lock:
            if name not in self._sizes:
                return None
            self._sizes.move_to_end(name)
        try:
            with open(self._path(name), "rb") as file:
                line = file.readline(4096)
                body = file.read()
            meta = json.loads(line)
            if meta.get("owner_scope") != self.owner_scope:  # read under other owner checks: not ours to serve
                self._drop(name)
                return None
            if meta.get("key") != key or meta.get("size") != len(body) or \
                    meta.get("sha256") != hashlib.sha256(body).hexdigest():
                raise ValueError("content does not match its checksum")
        except (OSError, ValueError) as exc:
            log.warning("read cache: dropped a damaged disk entry (%s); reading the object from the storage "
                        "again", exc)
            self.stats.add(disk_damaged=1)
            self._drop(name)
            return None
        return _Entry(body, meta.get("owner"), False)

    def put(self, key: str, entry: _Entry) -> None:
        if len(entry.data) > self.capacity:
            return
        name = self._name(key)
        path = self._path(name)
        meta = json.dumps({"key": key, "owner": entry.owner, "owner_scope": self.owner_scope, "size": len(entry.data),
                           "sha256": hashlib.sha256(entry.data).hexdigest()}).encode() + b"\n"
        temporary = f"{path}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with open(temporary, "wb") as file:
                file.write(meta)
                file.write(entry.data)
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("read cache: could not write a disk entry (%s); the object is served from the "
                        "storage", exc)
            _unlink(temporary)
            return
        size = len(meta) + len(entry.data)
        with self._lock:
            self._size += size - self._sizes.pop(name, 0)
            self._sizes[name] = size
        self._evict()

    def discard(self, key: str) -> None:
        self._drop(self._name(key))

    def _drop(self, name: str) -> None:
        with self._lock:
            self._size -= self._sizes.pop(name, 0)
        _unlink(self._path(name))

    def _evict(self) -> None:
        victims = []
        with self._lock:
            while self._size > self.capacity and self._sizes:
                name, size = self._sizes.popitem(last=False)
                self._size -= size
                victims.append(name)
        for name in victims:
            _unlink(self._path(name))
        if victims:
            self.stats.add(disk_evictions=len(victims))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _Flight:
    """One request in progress; the threads that want the same key wait for it."""

    def __init__(self, owner: str | None):
        self.owner = owner
        self.done = threading.Event()
        self.data: bytes | None = None
        self.stale = False  # dropped (put, delete, forget) while in flight: not kept


class ReadCache:
    """The caches and what they share: statistics, flights in progress, the attachments' keys, and the
    uuids the prefetcher announced."""

    EXPECT_SECONDS = 30.0  # an announced uuid not read by then is forgotten

    def __init__(self, memory_bytes: int, max_entry: int, disk_folder: str = "", disk_bytes: int = 0):
        self.stats = CacheStats()
        self.memory = MemoryCache(memory_bytes, max_entry, self.stats) if memory_bytes > 0 else None
        self.disk = DiskCache(disk_folder, disk_bytes, self.stats) if disk_folder else None
        self.max_entry = max_entry if self.memory is not None else disk_bytes
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._keys_of: dict[str, set[str]] = {}  # attachment uuid -> keys cached or in flight
        self._expected: dict[str, float] = {}  # uuid -> deadline (monotonic)
        self._pending = 0  # prefetches being resolved (their uuids are not known yet)
        self._pending_done = threading.Condition(self._lock)

    def __repr__(self) -> str:
        memory = f"{self.memory.capacity // 2**20} MB in memory" if self.memory is not None else "no memory"
        disk = f", {self.disk.capacity // 2**20} MB on disk" if self.disk is not None else ""
        return f"ReadCache({memory}{disk})"

    @property
    def memory_bytes(self) -> int:
        return self.memory.size if self.memory is not None else 0

    @property
    def disk_bytes(self) -> int:
        return self.disk.size if self.disk is not None else 0

    @property
    def capacity(self) -> int:
        """The bytes a prefetch may fill without evicting what it fetched itself."""
        return self.memory.capacity if self.memory is not None else (self.disk.capacity if self.disk is not None else 0)

    # --- what the prefetcher tells the cache --------------------------------------------------------
    @contextmanager
    def resolving(self):
        """Held while the prefetcher resolves a request to attachments: range reads of objects not yet
        announced wait for it (at most ``timeout`` of ``await_resolution``) instead of racing it."""
        with self._lock:
            self._pending += 1
        try:
            yield
        finally:
            with self._lock:
                self._pending -= 1
                self._pending_done.notify_all()

    def expect(self, uuids) -> None:
        """The prefetcher is about to read these attachments whole."""
        deadline = time.monotonic() + self.EXPECT_SECONDS
        with self._lock:
            for uuid in uuids:
                self._expected[uuid] = deadline

    def is_expected(self, uuid: str, wait: float = 1.0) -> bool:
        with self._lock:
            if self._pending:
                self._pending_done.wait_for(lambda: self._pending == 0, timeout=wait)
            deadline = self._expected.get(uuid)
            if deadline is not None and deadline < time.monotonic():
                del self._expected[uuid]
                deadline = None
            return deadline is not None

    def forget(self, uuid: str) -> None:
        """Drops every key of attachment ``uuid`` (it is being removed)."""
        with self._lock:
            keys = self._keys_of.pop(uuid, set())
            self._expected.pop(uuid, None)
        for key in keys:
            self.discard(key)

    # --- entries ------------------------------------------------------------------------------------
    def lookup(self, key: str, owner: str | None, count: bool = True) -> bytes | None:
        entry = self.memory.get(key) if self.memory is not None else None
        if entry is None and self.disk is not None:
            entry = self.disk.get(key)
            if entry is not None:
                self.stats.add(disk_hits=1)
                if self.memory is not None:
                    self.memory.put(key, entry)
        if entry is None or (owner is not None and entry.owner != owner):
            return None
        if count:
            used = entry.prefetched
            entry.prefetched = False
            self.stats.add(hits=1, prefetch_used=int(used))
        return entry.data

    def store(self, key: str, data: bytes, owner: str | None, uuid: str | None, prefetched: bool) -> None:
        if len(data) > self.max_entry:
            return
        entry = _Entry(data, owner, prefetched)
        kept = self.memory.put(key, entry) if self.memory is not None else False
        if self.disk is not None:
            self.disk.put(key, _Entry(data, owner, False))
        if uuid is not None and (kept or self.disk is not None):
            with self._lock:
                self._keys_of.setdefault(uuid, set()).add(key)
                if len(self._keys_of) > 100000:  # keys evicted since: forget the map, forget() then misses
                    self._keys_of = {uuid: {key}}

    def discard(self, key: str) -> None:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                flight.stale = True
        entry = self.memory.discard(key) if self.memory is not None else None
        if entry is not None:
            _count_dropped(self.stats, [entry], "memory_evictions")
        if self.disk is not None:
            self.disk.discard(key)

    # --- single flight ------------------------------------------------------------------------------
    def fetch(self, key: str, owner: Owner | None, read) -> bytes:
        """The object ``key``: from the cache, from a request in flight, or ``read()`` once and kept."""
        recorded = owner.metadata_value() if owner else None
        prefetch = _is_prefetch()
        data = self.lookup(key, recorded, count=not prefetch)
        if data is not None:
            return data
        with self._lock:
            found = self._flights.get(key)
            mine = found is None
            flight = self._flights[key] = _Flight(recorded) if found is None else found
        if not mine:
            flight.done.wait()
            if flight.data is not None and (recorded is None or flight.owner == recorded):
                if not prefetch:
                    self.stats.add(hits=1)
                return flight.data
            return read()  # it failed (the error is the first reader's) or was checked for another owner
        try:
            data = read()
            flight.data = data
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        self.stats.add(misses=int(not prefetch), prefetch_issued=int(prefetch))
        if not flight.stale:
            self.store(key, data, recorded, owner.uuid if owner else None, prefetch)
        return data

    def peek(self, key: str, owner: Owner | None) -> bytes | None:
        """The whole object if it is cached or in flight (waiting for it), else None; counts a hit."""
        recorded = owner.metadata_value() if owner else None
        data = self.lookup(key, recorded)
        if data is not None:
            return data
        with self._lock:
            flight = self._flights.get(key)
        if flight is None:
            return None
        flight.done.wait()
        if flight.data is not None and (recorded is None or flight.owner == recorded):
            self.stats.add(hits=1)
            return flight.data
        return None


class CachedStore:
    """``inner`` with a ``ReadCache`` in front of its reads. See the module docstring."""

    def __init__(self, inner: Store, cache: ReadCache):
        """``inner``'s owner checks are set (its owner mark read, at start-up) before: the disk entries kept
        under other checks are not served (see the module docstring)."""
        self.inner = inner
        self.cache = cache
        if cache.disk is not None:
            cache.disk.owner_scope = owner_scope(inner)

    @property
    def records_owner(self) -> bool:
        return owner_checks(self.inner)[0]

    @property
    def binds_owner(self) -> bool:
        return owner_checks(self.inner)[1]

    def __repr__(self) -> str:
        return f"{self.inner!r} with {self.cache!r}"

    def put(self, key: str, data: bytes | bytearray, *, owner: Owner | None = None) -> None:
        self.cache.discard(key)
        self.inner.put(key, data, owner=owner)
        if owner is not None and owner.content_type != KEEP_WRITES_EXCEPT:
            self.cache.store(key, bytes(data), owner.metadata_value(), owner.uuid, False)

    def get(self, key: str, *, owner: Owner | None = None) -> bytes:
        return self.cache.fetch(key, owner, lambda: self.inner.get(key, owner=owner))

    def get_range(self, key: str, start: int, length: int, *, owner: Owner | None = None) -> bytes:
        check_range(start, length)
        whole = self.cache.peek(key, owner)
        if whole is None and owner is not None and self.cache.is_expected(owner.uuid):
            whole = self.get(key, owner=owner)
        if whole is None:
            return self.inner.get_range(key, start, length, owner=owner)
        return exact_range(whole[start:start + length], key, length, "cached")

    def head(self, key: str) -> int:
        return self.inner.head(key)

    def delete(self, key: str) -> None:
        self.cache.discard(key)
        self.inner.delete(key)

    # The inner store's batch deletes (``BatchDelete``) and cold classes (``Restorable``) pass through: the
    # cache is in front of the provider in every deployment, so hiding them would turn the deferred
    # deletions' batches into single deletes and every cold object into a readable one.

    @property
    def max_batch(self) -> int:
        return batch_size(self.inner)

    def delete_batch(self, keys) -> dict[str, StoreError]:
        for key in keys:
            self.cache.discard(key)
        return delete_keys(self.inner, keys)

    @property
    def restore_tiers(self) -> tuple[str, ...]:
        return restore_tiers(self.inner)

    def cold_state(self, key: str) -> ColdState:
        return cold_state(self.inner, key)

    def restore(self, key: str, days: int, tier: str) -> ColdState:
        return request_restore(self.inner, key, days, tier)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)
