"""Deferred deletions: an area whose ``remove`` only queues, and the drainer that deletes in batches.

Orthanc calls the remove callback once per attachment, inside the DELETE request, one after the other;
on object storage each synchronous delete is a round trip. ``DeferredRemovalArea.remove`` instead
appends the attachment's keys (every name it may have on every side: ``ObjectArea.removal_keys``) to
the durable queue (``deletion_queue.DeletionJournal``) and returns. ``DeferredDeletions`` drains the
queue with ``threads`` workers, each sending one batch request at a time (``storage.protocol.delete_keys``:
S3 ``DeleteObjects`` of up to 1,000 keys, an Azure blob batch of 256, a GCS batch of 100; the
file-system side of hybrid mode deletes file by file, locally). A batch that fails is retried with
exponential backoff (1 s doubling to 60 s, with jitter): a store outage only delays the deletions.
Only what a remove callback queued is ever deleted, and an entry leaves the queue only once its object
is deleted (a missing object counts as deleted).

Moves and tiering go through ``side(name)``: a move step of an attachment whose removal is queued (or was
drained less than ``TOMBSTONE_SECONDS`` ago) finds its source missing, and a copy a step wrote to its
target just as the attachment was removed is queued for deletion too, so a move never resurrects a
deleted attachment nor loses its deletion.

Locks: the drainer's lock guards its in-memory lists only; network I/O is done outside it, so a remove
callback never waits on a worker's request.
"""

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import NotFound, StoreError
from ..storage.protocol import BatchDelete, ColdState, Store, delete_keys
from .contract import Area, Location, ObjectArea
from .deletion_queue import DeletionJournal, Entry

log = logging.getLogger("orthanc_objstore")

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
TOMBSTONE_SECONDS = 3600.0  # how long a drained removal still stops a move from resurrecting it
UNBATCHED_CHUNK = 32  # keys one worker takes at a time from a store that deletes one object per request
_WARN_EVERY_SECONDS = 30.0


class DeferredDeletions:
    """The queue's drainer: ``enqueue`` (from remove callbacks), worker threads, status for metrics and REST."""

    def __init__(self, journal: DeletionJournal, stores: dict[str, Store], threads: int = 4,
                 retry_first: float = RETRY_FIRST_SECONDS, retry_max: float = RETRY_MAX_SECONDS,
                 on_deleted: Callable[[str, int], None] | None = None,
                 on_failed: Callable[[str, int, StoreError], None] | None = None):
        self.journal = journal
        self.stores = stores
        self.threads = max(1, threads)
        self.retry_first, self.retry_max = retry_first, retry_max
        self.on_deleted = on_deleted or (lambda storage, count: None)
        self.on_failed = on_failed or (lambda storage, count, error: None)
        self._condition = threading.Condition()
        self._ready: dict[str, deque[Entry]] = {name: deque() for name in stores}
        self._retry: list[tuple[float, Entry]] = []  # (when, entry)
        self._attempts: dict[int, int] = {}
        self._in_flight = 0
        self._removed: dict[str, float] = {}  # uuid -> when its removal was queued (tombstones)
        self._workers: list[threading.Thread] = []
        self._stopping = False
        self._last_warning = 0.0
        self.deleted = 0
        self.last_error: str | None = None
        now = time.monotonic()
        for entry in journal.pending():  # resumed at start-up
            self._queue_locked(entry)
            if entry.uuid:
                self._removed[entry.uuid] = now

    def __repr__(self) -> str:
        return f"DeferredDeletions({self.journal.folder!r}, {self.threads} threads)"

    # --- what the remove callback and the move steps call ------------------------------------------------

    def enqueue(self, uuid: str, items: list[tuple[str, str]]) -> None:
        """Queues the objects ``(storage, key)`` of attachment ``uuid``; durable when it returns."""
        entries = self.journal.append((storage, key, uuid) for storage, key in items)
        with self._condition:
            self._removed[uuid] = time.monotonic()
            if len(self._removed) > 100_000:
                self._forget_old_tombstones_locked()
            for entry in entries:
                self._queue_locked(entry)
            self._condition.notify(len(entries))

    def was_removed(self, uuid: str) -> bool:
        """True when a removal of ``uuid`` is queued, or was drained less than ``TOMBSTONE_SECONDS`` ago."""
        with self._condition:
            when = self._removed.get(uuid)
        return when is not None and time.monotonic() - when < TOMBSTONE_SECONDS

    def pending(self) -> int:
        """Objects queued and not yet deleted (in flight included)."""
        return self.journal.count()

    def status(self) -> dict:
        with self._condition:
            retrying = len(self._retry)
            in_flight = self._in_flight
        return {"Enabled": True, "Pending": self.pending(), "InFlight": in_flight, "WaitingForRetry": retrying,
                "Deleted": self.deleted, "Threads": self.threads, "LastError": self.last_error}

    # --- workers -------------------------------------------------------------------------------------------

    def start(self) -> None:
        with self._condition:
            if self._workers:
                return
            self._stopping = False
            self._workers = [threading.Thread(target=self._run, name=f"objstore-deletions-{i}", daemon=True)
                             for i in range(self.threads)]
        for worker in self._workers:
            worker.start()
        count = self.pending()
        if count:
            log.info("deferred deletions: %d object(s) pending from before the restart, deleting them", count)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the workers (requests in flight finish, up to ``timeout``); what is pending stays queued."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
            workers, self._workers = self._workers, []
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.journal.close()

    def drain(self, timeout: float = 30.0) -> bool:
        """Deletes in the calling thread until nothing is ready (tests, offline tools); True when empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            taken = self._take(block=False)
            if taken is None:
                with self._condition:
                    if not self._retry and not self._in_flight:
                        return self.pending() == 0
                    wait = min((when for when, _ in self._retry), default=time.monotonic() + 0.05)
                time.sleep(max(0.0, min(0.05, wait - time.monotonic())))
                continue
            self._send(*taken)
        return self.pending() == 0

    def _run(self) -> None:
        while True:
            taken = self._take(block=True)
            if taken is None:
                return
            try:
                self._send(*taken)
            except Exception:  # noqa: BLE001 - a worker never dies; its entries are retried
                log.exception("deferred deletions: unexpected error")

    def _take(self, block: bool) -> tuple[str, list[Entry]] | None:
        """The next batch (same storage, up to the store's batch size); None when stopping (or, not
        blocking, when nothing is ready)."""
        with self._condition:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                if self._retry:
                    due = [item for item in self._retry if item[0] <= now]
                    if due:
                        self._retry = [item for item in self._retry if item[0] > now]
                        for _, entry in due:
                            self._ready[entry.storage].append(entry)
                for storage, ready in self._ready.items():
                    if ready:
                        store = self.stores[storage]
                        size = int(store.max_batch) if isinstance(store, BatchDelete) else UNBATCHED_CHUNK
                        batch = [ready.popleft() for _ in range(min(size, len(ready)))]
                        self._in_flight += len(batch)
                        return storage, batch
                if not block:
                    return None
                wait = min((when for when, _ in self._retry), default=now + 60.0) - now
                self._condition.wait(max(0.01, wait))

    def _send(self, storage: str, batch: list[Entry]) -> None:
        self.journal.sync()  # the queue is on the disk before anything it names is deleted
        try:
            failed = delete_keys(self.stores[storage], [entry.key for entry in batch])
        except StoreError as exc:
            failed = {entry.key: exc for entry in batch}
        done = [entry for entry in batch if entry.key not in failed]
        if done:
            self.journal.acknowledge(entry.id for entry in done)
            self.on_deleted(storage, len(done))
        retried = [entry for entry in batch if entry.key in failed]
        with self._condition:
            self._in_flight -= len(batch)
            self.deleted += len(done)
            now = time.monotonic()
            for entry in retried:
                attempt = self._attempts.get(entry.id, 0) + 1
                self._attempts[entry.id] = attempt
                delay = min(self.retry_max, self.retry_first * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
                self._retry.append((now + delay, entry))
            for entry in done:
                self._attempts.pop(entry.id, None)
            if retried:
                self._condition.notify()
        if retried:
            error = failed[retried[0].key]
            self.on_failed(storage, len(retried), error)
            self.last_error = str(error)
            if time.monotonic() - self._last_warning >= _WARN_EVERY_SECONDS:
                self._last_warning = time.monotonic()
                log.warning("deferred deletions: %d object(s) of the %s could not be deleted yet, retried with "
                            "backoff (%s)", len(retried), storage, error)

    def _queue_locked(self, entry: Entry) -> None:
        ready = self._ready.get(entry.storage)
        if ready is None:  # a storage this deployment no longer has (hybrid mode turned off): kept queued
            log.warning("deferred deletions: %s is queued in the %s, which this configuration does not use; "
                        "kept in the queue", entry.key, entry.storage)
            return
        ready.append(entry)

    def _forget_old_tombstones_locked(self) -> None:
        limit = time.monotonic() - TOMBSTONE_SECONDS
        self._removed = {uuid: when for uuid, when in self._removed.items() if when >= limit}


class DeferredRemovalArea:
    """An ``Area`` whose ``remove`` queues the attachment's objects in ``deletions`` (every other call goes
    to ``inner``). ``sides`` are the bare object areas of each storage (names as in ``Location``)."""

    def __init__(self, inner: Area, sides: dict[str, ObjectArea], deletions: DeferredDeletions):
        self.inner = inner
        self.sides = sides
        self.deletions = deletions

    def __repr__(self) -> str:
        return f"{self.inner!r} with {self.deletions!r}"

    def create(self, uuid: str, content_type: int, data: bytes) -> Location:
        return self.inner.create(uuid, content_type, data)

    def read(self, uuid: str, content_type: int, location: Location | None = None) -> bytes:
        return self.inner.read(uuid, content_type, location)

    def read_range(self, uuid: str, content_type: int, start: int, length: int,
                   location: Location | None = None) -> bytes:
        return self.inner.read_range(uuid, content_type, start, length, location)

    def remove(self, uuid: str, content_type: int, location: Location | None = None) -> None:
        items = [(name, key) for name, area in self.sides.items()
                 for key in area.removal_keys(uuid, content_type, location)]
        try:
            self.deletions.enqueue(uuid, items)
        except OSError as exc:  # the queue cannot be written (disk full?): delete now, as without the queue
            log.warning("deferred deletions: cannot queue attachment %s (%s); deleting it now", uuid, exc)
            self.inner.remove(uuid, content_type, location)

    def locate(self, uuid: str, content_type: int) -> list[Location]:
        return self.inner.locate(uuid, content_type)

    @property
    def restore_tiers(self) -> tuple[str, ...]:
        return self.inner.restore_tiers

    def cold_state(self, uuid: str, content_type: int) -> ColdState:
        return self.inner.cold_state(uuid, content_type)

    def restore(self, uuid: str, content_type: int, days: int, tier: str) -> ColdState:
        return self.inner.restore(uuid, content_type, days, tier)

    def side(self, name: str) -> "MoveSide":
        """One storage side for move jobs and tiering (hybrid mode), aware of the queued removals."""
        return MoveSide(self.inner.side(name), name, self.sides[name], self.deletions)  # type: ignore[attr-defined]


class MoveSide:
    """A side of hybrid mode as a move step sees it: an attachment whose removal is queued is missing, and
    a copy written for it is queued for deletion as well."""

    def __init__(self, inner: Area, name: str, bare: ObjectArea, deletions: DeferredDeletions):
        self.inner, self.name, self.bare, self.deletions = inner, name, bare, deletions

    def read(self, uuid: str, content_type: int) -> bytes:
        if self.deletions.was_removed(uuid):
            raise NotFound(f"attachment {uuid} of type {content_type} was deleted (its removal is queued)", uuid)
        return self.inner.read(uuid, content_type)

    def create(self, uuid: str, content_type: int, data: bytes) -> Location:
        location = self.inner.create(uuid, content_type, data)
        if self.deletions.was_removed(uuid):  # removed while this copy was being written: never resurrect it
            self.deletions.enqueue(uuid, [(self.name, key) for key in self.bare.removal_keys(uuid, content_type)])
        return location

    def remove(self, uuid: str, content_type: int, location: Location | None = None) -> None:
        self.inner.remove(uuid, content_type, location)

    def locate(self, uuid: str, content_type: int) -> list[Location]:
        return self.inner.locate(uuid, content_type)

    def read_range(self, uuid: str, content_type: int, start: int, length: int,
                   location: Location | None = None) -> bytes:
        return self.inner.read_range(uuid, content_type, start, length, location)
