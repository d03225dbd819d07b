"""The plugin's metrics (``StorageMetrics``) and the area wrapper that counts every storage operation (``MeteredArea``).

``build.build_area`` wraps each storage side (object storage, file system) in a ``MeteredArea``
when the glue asks for metrics, so the providers, the encryption layer and the hybrid router hold
no counter. What the wrapper cannot see has a small hook where it happens: hybrid fallbacks
(``HybridArea(on_fallback=...)``), move-job steps (``JobManager(on_step=...)``), SDK retries
(``S3Store.count_retries``), orphans waiting for clean-up (a gauge on ``OrphanReaper.pending``), the
files handled by restores (``RestoreManager(on_step=...)``), deferred deletions
(``DeferredDeletions(on_deleted=..., on_failed=...)`` and a gauge on its ``pending``), the objects handled
by adoptions (``Adopter(on_outcome=...)``).

Counting rules: every call of ``create`` / ``read`` / ``read_range`` / ``remove`` is one operation of
its side, failed or not; the bytes are those written or returned by the calls that succeeded (a
delete's size is unknown without one more request, so deletes count no bytes); a failure counts
one error of its kind, taken from the error vocabulary (``errors.py``): a read refused because the object
is in a cold class is ``needs_restore``. ``locate``, ``cold_state`` and ``restore`` are not counted as
operations (restores have their own counter).
"""

from collections.abc import Callable
from typing import TypeVar

from ..areas.contract import FILE_SYSTEM, OBJECT_STORAGE, Area, Location
from ..errors import IntegrityError, NeedsRestore, NotFound, PermissionDenied, StoreUnavailable
from ..storage.protocol import ColdState, RetryCounting
from .registry import Metrics

WRITE, READ, READ_RANGE, DELETE = "write", "read", "read_range", "delete"
OPERATIONS = (WRITE, READ, READ_RANGE, DELETE)
NOT_FOUND, INTEGRITY, UNAVAILABLE, PERMISSION, OTHER = "not_found", "integrity", "unavailable", "permission", "other"
NEEDS_RESTORE = "needs_restore"
ERROR_KINDS = (NOT_FOUND, INTEGRITY, UNAVAILABLE, PERMISSION, NEEDS_RESTORE, OTHER)

OPERATIONS_TOTAL = "orthanc_objstore_operations_total"
BYTES_TOTAL = "orthanc_objstore_bytes_total"
ERRORS_TOTAL = "orthanc_objstore_errors_total"
RETRIES_TOTAL = "orthanc_objstore_retries_total"
FALLBACKS_TOTAL = "orthanc_objstore_hybrid_fallbacks_total"
MOVE_FILES_TOTAL = "orthanc_objstore_move_files_total"
MOVE_BYTES_TOTAL = "orthanc_objstore_move_bytes_total"
ORPHANS_PENDING = "orthanc_objstore_orphans_pending"
RESTORE_FILES_TOTAL = "orthanc_objstore_restore_files_total"
DELETIONS_PENDING = "orthanc_objstore_deletions_pending"
ADOPT_OBJECTS_TOTAL = "orthanc_objstore_adopt_objects_total"


def error_kind(exc: BaseException) -> str:
    """The ``kind`` label of a failure, from the error vocabulary (anything else is ``other``)."""
    if isinstance(exc, NotFound):
        return NOT_FOUND
    if isinstance(exc, IntegrityError):
        return INTEGRITY
    if isinstance(exc, StoreUnavailable):
        return UNAVAILABLE
    if isinstance(exc, PermissionDenied):
        return PERMISSION
    if isinstance(exc, NeedsRestore):
        return NEEDS_RESTORE
    return OTHER


class StorageMetrics:
    """Every metric of the plugin, created up front (so that each series exists from the start, at 0)."""

    def __init__(self, hybrid: bool = False, metrics: Metrics | None = None,
                 move_outcomes: dict[str, bool] | None = None, restore_outcomes: tuple[str, ...] = (),
                 adopt_outcomes: tuple[str, ...] = ()):
        """``move_outcomes``: in hybrid mode, the outcomes of a move step, each with whether it moves bytes;
        ``restore_outcomes``: those of a file's restore; ``adopt_outcomes``: those of an adopted object. All are
        the jobs' vocabularies, which ``build.storage_metrics`` passes (``jobs.steps.OUTCOMES``,
        ``jobs.restore.OUTCOMES``, ``jobs.adopt.OUTCOMES``)."""
        self.metrics = metrics or Metrics()
        m = self.metrics
        self.storages = (OBJECT_STORAGE, FILE_SYSTEM) if hybrid else (OBJECT_STORAGE,)
        for storage in self.storages:
            for operation in OPERATIONS:
                self.operations(operation, storage)
                for kind in ERROR_KINDS:
                    self.error(operation, storage, kind)
                if operation != DELETE:
                    self.bytes(operation, storage)
        self.restore_files = {outcome: m.counter(RESTORE_FILES_TOTAL, "Files handled by POST /objstore/restore and "
                                                 "restores started by reads, by outcome", outcome=outcome)
                              for outcome in restore_outcomes}
        self.adopt_objects = {outcome: m.counter(ADOPT_OBJECTS_TOTAL, "Objects handled by adoptions (POST "
                                                 "/objstore/adopt..., adopt jobs, the indexer), by outcome",
                                                 outcome=outcome) for outcome in adopt_outcomes}
        if hybrid:
            self.fallbacks = m.counter(FALLBACKS_TOTAL, "Reads (whole or ranges) served by the secondary "
                                       "storage of hybrid mode after the primary said not found")
            outcomes = move_outcomes or {}
            self.move_files = {outcome: m.counter(MOVE_FILES_TOTAL, "Files handled by move jobs, by outcome",
                                                  outcome=outcome) for outcome in outcomes}
            self.move_bytes = {outcome: m.counter(MOVE_BYTES_TOTAL, "Bytes (sizes in Orthanc's index) of the "
                                                  "files handled by move jobs, by outcome", outcome=outcome)
                               for outcome, has_bytes in outcomes.items() if has_bytes}

    def operations(self, operation: str, storage: str):
        return self.metrics.counter(OPERATIONS_TOTAL, "Storage operations, failed or not", operation=operation,
                                    storage=storage)

    def bytes(self, operation: str, storage: str):
        return self.metrics.counter(BYTES_TOTAL, "Bytes written or read by the storage operations that "
                                    "succeeded", operation=operation, storage=storage)

    def error(self, operation: str, storage: str, kind: str):
        return self.metrics.counter(ERRORS_TOTAL, "Failed storage operations, by kind of failure",
                                    operation=operation, storage=storage, kind=kind)

    def count_retries(self, store) -> None:
        """Counts the retries of ``store``'s SDK when it reports them (``RetryCounting``: S3)."""
        if isinstance(store, RetryCounting):
            retries = self.metrics.counter(RETRIES_TOTAL, "Requests the object storage's SDK sent again after a "
                                           "failure (S3 only)", storage=OBJECT_STORAGE)
            store.count_retries(retries.add)

    def watch_orphans(self, pending) -> None:
        """``pending()`` (``OrphanReaper.pending``) is read at each publication."""
        self.metrics.gauge(ORPHANS_PENDING, pending, "Objects left by failed uploads or deletes, waiting "
                           "to be removed")

    def watch_cache(self, cache) -> None:
        """The read cache's and the prefetcher's counters (``storage.cached.CacheStats``), read at each
        publication; counters only go up, the sizes are gauges."""
        stats = cache.stats
        counters = (
            ("hits", "Whole or range reads served by the read cache (memory or disk) or by a request in flight"),
            ("misses", "Reads the read cache sent to the object storage"),
            ("memory_evictions", "Entries evicted from (or dropped by deletes in) the memory cache"),
            ("disk_hits", "Reads served by the disk cache"),
            ("disk_evictions", "Entries evicted from the disk cache"),
            ("disk_damaged", "Disk cache entries that failed their checksum (dropped and read again)"),
            ("prefetch_issued", "Objects read from the object storage by the prefetcher"),
            ("prefetch_used", "Prefetched objects read by Orthanc afterwards"),
            ("prefetch_wasted", "Prefetched objects evicted or dropped before Orthanc read them"),
            ("prefetch_wasted_bytes", "Bytes of the prefetched objects evicted before Orthanc read them"),
        )
        for name, text in counters:
            self.metrics.gauge(f"orthanc_objstore_cache_{name}_total", _reader(stats, name), text)
        self.metrics.gauge("orthanc_objstore_cache_bytes", lambda: cache.memory_bytes,
                           "Bytes held by the read cache", tier="memory")
        self.metrics.gauge("orthanc_objstore_cache_bytes", lambda: cache.disk_bytes,
                           "Bytes held by the read cache", tier="disk")

    def watch_deletions(self, pending) -> None:
        """``pending()`` (``DeferredDeletions.pending``) is read at each publication."""
        self.metrics.gauge(DELETIONS_PENDING, pending, "Objects whose deletion is queued (deferred deletions) "
                           "and not yet done")

    def deferred_deleted(self, storage: str, count: int) -> None:
        """``count`` objects deleted by the deferred deletions' drainer: delete operations of ``storage``."""
        self.operations(DELETE, storage).add(count)

    def deferred_failed(self, storage: str, count: int, exc: BaseException) -> None:
        """``count`` objects the drainer could not delete yet (retried): failed delete operations."""
        self.operations(DELETE, storage).add(count)
        self.error(DELETE, storage, error_kind(exc)).add(count)

    def move_step(self, outcome: str, size: int) -> None:
        """One finished step of a move job (``JobManager(on_step=...)``); ``size`` from Orthanc's index."""
        self.move_files[outcome].add()
        if outcome in self.move_bytes:
            self.move_bytes[outcome].add(size)


    def adopt_step(self, outcome: str) -> None:
        """One object handled by an adoption (``Adopter(on_outcome=...)``)."""
        counter = self.adopt_objects.get(outcome)
        if counter is not None:
            counter.add()

    def restore_step(self, outcome: str) -> None:
        """One file handled by a restore (``RestoreManager(on_step=...)``, ``ColdReads``)."""
        self.restore_files[outcome].add()


T = TypeVar("T")


class _Counted:
    """The counters of one operation on one side, looked up once."""

    __slots__ = ("operations", "bytes", "errors")

    def __init__(self, metrics: StorageMetrics, operation: str, storage: str):
        self.operations = metrics.operations(operation, storage)
        self.bytes = metrics.bytes(operation, storage) if operation != DELETE else None
        self.errors = {kind: metrics.error(operation, storage, kind) for kind in ERROR_KINDS}

    def failed(self, exc: BaseException) -> None:
        self.operations.add()
        self.errors[error_kind(exc)].add()

    def done(self, size: int) -> None:
        self.operations.add()
        if self.bytes is not None:
            self.bytes.add(size)

    def count(self, call: Callable[[], T], size: Callable[[T], int]) -> T:
        """``call()``, counted: done with ``size(result)`` bytes, or failed with its error (raised again)."""
        try:
            result = call()
        except BaseException as exc:
            self.failed(exc)
            raise
        self.done(size(result))
        return result


class MeteredArea:
    """An ``Area`` that counts the operations, bytes and errors of ``inner`` as storage ``storage``."""

    def __init__(self, inner: Area, metrics: StorageMetrics, storage: str):
        self.inner = inner
        self.storage = storage
        self._write, self._read, self._range, self._delete = (_Counted(metrics, operation, storage)
                                                              for operation in OPERATIONS)

    def __repr__(self) -> str:
        return repr(self.inner)

    def create(self, uuid: str, content_type: int, data: bytes) -> Location:
        return self._write.count(lambda: self.inner.create(uuid, content_type, data), lambda _: len(data))

    def read(self, uuid: str, content_type: int, location: Location | None = None) -> bytes:
        return self._read.count(lambda: self.inner.read(uuid, content_type, location), len)

    def read_range(self, uuid: str, content_type: int, start: int, length: int,
                   location: Location | None = None) -> bytes:
        return self._range.count(lambda: self.inner.read_range(uuid, content_type, start, length, location), len)

    def remove(self, uuid: str, content_type: int, location: Location | None = None) -> None:
        self._delete.count(lambda: self.inner.remove(uuid, content_type, location), lambda _: 0)

    def locate(self, uuid: str, content_type: int) -> list[Location]:
        return self.inner.locate(uuid, content_type)

    @property
    def restore_tiers(self) -> tuple[str, ...]:
        return self.inner.restore_tiers

    def cold_state(self, uuid: str, content_type: int) -> ColdState:
        return self.inner.cold_state(uuid, content_type)

    def restore(self, uuid: str, content_type: int, days: int, tier: str) -> ColdState:
        return self.inner.restore(uuid, content_type, days, tier)


def _reader(stats, name: str):
    return lambda: float(getattr(stats, name))
