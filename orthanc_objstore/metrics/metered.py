"""The plugin's metrics (``StorageMetrics``) and the area wrapper that counts every storage operation (``MeteredArea``).

``build.build_area`` wraps each storage side (object storage, file system) in a ``MeteredArea``
when the glue asks for metrics, so the providers, the encryption layer and the hybrid router hold
no counter. What the wrapper cannot see has a small hook where it happens: hybrid fallbacks
(``HybridArea(on_fallback=...)``), move-job steps (``JobManager(on_step=...)``), SDK retries
(``S3Store.count_retries``), orphans waiting for clean-up (a gauge on ``OrphanReaper.pending``), deferred
deletions (``DeferredDeletions(on_deleted=..., on_failed=...)`` and a gauge on its ``pending``).

Counting rules: every call of ``create`` / ``read`` / ``read_range`` / ``remove`` is one operation of
its side, failed or not; the bytes are those written or returned by the calls that succeeded (a
delete's size is unknown without one more request, so deletes count no bytes); a failure counts
one error of its kind, taken from the error vocabulary (``errors.py``). ``locate`` is not counted.
"""

from ..areas.contract import Area, Location
from ..errors import IntegrityError, NotFound, PermissionDenied, StoreUnavailable
from .registry import Metrics

WRITE, READ, READ_RANGE, DELETE = "write", "read", "read_range", "delete"
OPERATIONS = (WRITE, READ, READ_RANGE, DELETE)
NOT_FOUND, INTEGRITY, UNAVAILABLE, PERMISSION, OTHER = "not_found", "integrity", "unavailable", "permission", "other"
ERROR_KINDS = (NOT_FOUND, INTEGRITY, UNAVAILABLE, PERMISSION, OTHER)
MOVE_OUTCOMES = ("moved", "skipped", "failed", "missing")  # move.MOVED, SKIPPED, FAILED, MISSING

OPERATIONS_TOTAL = "orthanc_objstore_operations_total"
BYTES_TOTAL = "orthanc_objstore_bytes_total"
ERRORS_TOTAL = "orthanc_objstore_errors_total"
RETRIES_TOTAL = "orthanc_objstore_retries_total"
FALLBACKS_TOTAL = "orthanc_objstore_hybrid_fallbacks_total"
MOVE_FILES_TOTAL = "orthanc_objstore_move_files_total"
MOVE_BYTES_TOTAL = "orthanc_objstore_move_bytes_total"
ORPHANS_PENDING = "orthanc_objstore_orphans_pending"
DELETIONS_PENDING = "orthanc_objstore_deletions_pending"


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
    return OTHER


class StorageMetrics:
    """Every metric of the plugin, created up front (so that each series exists from the start, at 0)."""

    def __init__(self, hybrid: bool = False, metrics: Metrics | None = None):
        self.metrics = metrics or Metrics()
        m = self.metrics
        self.storages = ("object-storage", "file-system") if hybrid else ("object-storage",)
        for storage in self.storages:
            for operation in OPERATIONS:
                self.operations(operation, storage)
                for kind in ERROR_KINDS:
                    self.error(operation, storage, kind)
                if operation != DELETE:
                    self.bytes(operation, storage)
        if hybrid:
            self.fallbacks = m.counter(FALLBACKS_TOTAL, "Reads (whole or ranges) served by the secondary "
                                       "storage of hybrid mode after the primary said not found")
            self.move_files = {outcome: m.counter(MOVE_FILES_TOTAL, "Files handled by move jobs, by outcome",
                                                  outcome=outcome) for outcome in MOVE_OUTCOMES}
            self.move_bytes = {outcome: m.counter(MOVE_BYTES_TOTAL, "Bytes (sizes in Orthanc's index) of the "
                                                  "files handled by move jobs, by outcome", outcome=outcome)
                               for outcome in MOVE_OUTCOMES if outcome != "missing"}

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
        """Counts the retries of ``store``'s SDK when it reports them (``S3Store.count_retries``)."""
        hook = getattr(store, "count_retries", None)
        if hook is not None:
            hook(self.metrics.counter(RETRIES_TOTAL, "Requests the object storage's SDK sent again after a "
                                      "failure (S3 only)", storage="object-storage").add)

    def watch_orphans(self, pending) -> None:
        """``pending()`` (``OrphanReaper.pending``) is read at each publication."""
        self.metrics.gauge(ORPHANS_PENDING, pending, "Objects left by failed uploads or deletes, waiting "
                           "to be removed")

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
        try:
            location = self.inner.create(uuid, content_type, data)
        except BaseException as exc:
            self._write.failed(exc)
            raise
        self._write.done(len(data))
        return location

    def read(self, uuid: str, content_type: int, location: Location | None = None) -> bytes:
        try:
            data = self.inner.read(uuid, content_type, location)
        except BaseException as exc:
            self._read.failed(exc)
            raise
        self._read.done(len(data))
        return data

    def read_range(self, uuid: str, content_type: int, start: int, length: int,
                   location: Location | None = None) -> bytes:
        try:
            data = self.inner.read_range(uuid, content_type, start, length, location)
        except BaseException as exc:
            self._range.failed(exc)
            raise
        self._range.done(len(data))
        return data

    def remove(self, uuid: str, content_type: int, location: Location | None = None) -> None:
        try:
            self.inner.remove(uuid, content_type, location)
        except BaseException as exc:
            self._delete.failed(exc)
            raise
        self._delete.done(0)

    def locate(self, uuid: str, content_type: int) -> list[Location]:
        return self.inner.locate(uuid, content_type)
