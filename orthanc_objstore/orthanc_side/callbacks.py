"""Orthanc's storage callbacks over an area: the v1 and v3 adapters, error codes, and orphans of failed uploads.

``StorageCallbacks.create/read/read_range/remove`` hold the logic; ``v1()`` and ``v3()`` adapt them to
the two registration APIs (arguments, return values, error codes) and add nothing else. Orthanc-free:
the glue passes in the error codes it registered and registers the adapters.
"""

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ..areas.contract import Area, Location
from ..areas.naming import CONTENT_TYPE_DICOM, CONTENT_TYPE_DICOM_UNTIL_PIXEL_DATA
from ..errors import IntegrityError, NeedsRestore, NotFound, StoreError, StoreUnavailable
from .cold import ColdReads
from .orphans import OrphanReaper

log = logging.getLogger("orthanc_objstore")

# A failed header write within this many seconds of a DICOM write in the same thread belongs to the
# same upload (Orthanc writes an upload's attachments one after the other, in one thread).
_SAME_UPLOAD_SECONDS = 60.0
# How much of each DICOM file is kept until the next write of its thread, to prove that a failed
# header attachment (type 3: the file up to its pixel data) belongs to that very file.
_KEPT_PREFIX = 256 * 1024


@dataclass(frozen=True)
class ErrorCodes:
    """Orthanc error codes for failed storage operations (v3 API only; v1 can only say "plugin error").

    Reads: missing object -> UnknownResource (HTTP 404); damaged, truncated or undecryptable object
    -> CorruptedFile (500); store unreachable -> ``unavailable``, a plugin error code of our own that
    Orthanc answers as 503 (the glue registers it; StorageAreaPlugin when it could not); object in a
    cold class not restored -> ``needs_restore``, another code of ours answered as 503 whose text
    says to restore it; anything else -> StorageAreaPlugin (500). Writes and removes never answer 404.
    """

    success: int = 0
    unknown_resource: int = 17
    corrupted_file: int = 20
    storage_plugin: int = 32
    unavailable: int = 32
    needs_restore: int = 32

    def for_read(self, exc) -> int:
        if isinstance(exc, NotFound):
            return self.unknown_resource
        if isinstance(exc, NeedsRestore):
            return self.needs_restore
        return self.for_write(exc)

    def for_write(self, exc) -> int:
        if isinstance(exc, IntegrityError):
            return self.corrupted_file
        if isinstance(exc, StoreUnavailable):
            return self.unavailable
        return self.storage_plugin


class StorageFailure(Exception):
    """What Orthanc sees when a storage operation fails: a message without SDK internals or secrets.

    ``cause`` is the original error (kept for choosing the error code, never shown)."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause


def failure(action, uuid, content_type, exc, more: str = "") -> StorageFailure:
    """Logs a failed operation once and returns what to raise to Orthanc (``more`` ends the message)."""
    if isinstance(exc, NotFound):
        message = f"{action} attachment {uuid} of type {content_type}: not found in the storage ({exc})"
    elif isinstance(exc, StoreError):
        message = f"{action} attachment {uuid} of type {content_type} failed: {exc}"
    else:
        message = f"{action} attachment {uuid} of type {content_type} failed: {type(exc).__name__}: {exc}"
        log.debug("unexpected failure", exc_info=exc)
    message += more
    log.error("%s", message)
    return StorageFailure(message, exc)


def _uncompressed(data: bytes, limit: int) -> bytes:
    """Up to ``limit`` bytes of an attachment Orthanc compressed (8-byte size, then a zlib stream)."""
    try:
        return zlib.decompressobj().decompress(data[8:], limit)
    except zlib.error:
        return b""


class StorageCallbacks:
    """Orthanc's storage callbacks on top of an area. Every failure is logged once, then re-raised bare."""

    def __init__(self, area: Area, reaper: OrphanReaper, error_codes: ErrorCodes = ErrorCodes(),
                 storage_compression: bool = False, on_read_failure: Callable[[str], None] | None = None,
                 cold_reads: ColdReads | None = None, on_remove: Callable[[str], None] | None = None):
        """``on_remove(uuid)`` is called first by every ``remove`` (the read cache forgets the attachment
        there, before the store delete, which may be deferred)."""
        self.area = area
        self.cold_reads = cold_reads
        self.reaper = reaper
        self.error_codes = error_codes
        self.storage_compression = storage_compression
        self.on_read_failure = on_read_failure or (lambda uuid: None)
        self.on_remove = on_remove or (lambda uuid: None)
        # The last DICOM file written by each OS thread: (uuid, when, first bytes). Not threading.local():
        # Orthanc's Python plugin gives each callback a fresh Python thread state, which drops it.
        self._last_dicom: dict[int, tuple[str, float, bytes]] = {}
        self._lock = threading.Lock()

    def create(self, uuid: str, content_type: int, data: bytes) -> Location | None:
        thread = threading.get_ident()
        with self._lock:
            recent = self._last_dicom.pop(thread, None)
        try:
            location = self.area.create(uuid, content_type, data)
        except Exception as exc:  # noqa: BLE001 - any failure must fail the upload
            self._after_failed_create(uuid, content_type, data, recent)
            raise failure("writing", uuid, content_type, exc) from None
        if content_type == CONTENT_TYPE_DICOM:
            now = time.monotonic()
            with self._lock:
                self._last_dicom[thread] = (uuid, now, data[:_KEPT_PREFIX])
                if len(self._last_dicom) > 256:  # threads that ended: forget what is old
                    self._last_dicom = {t: v for t, v in self._last_dicom.items() if now - v[1] < _SAME_UPLOAD_SECONDS}
        return location

    def read(self, uuid: str, content_type: int, location: Location | None = None) -> bytes:
        try:
            return self.area.read(uuid, content_type, location)
        except Exception as exc:  # noqa: BLE001
            self.on_read_failure(uuid)
            raise failure("reading", uuid, content_type, exc, self._cold(uuid, content_type, exc)) from None

    def read_range(self, uuid: str, content_type: int, start: int, length: int,
                   location: Location | None = None) -> bytes:
        try:
            data = self.area.read_range(uuid, content_type, start, length, location)
        except Exception as exc:  # noqa: BLE001
            self.on_read_failure(uuid)
            raise failure("reading a range of", uuid, content_type, exc, self._cold(uuid, content_type, exc)) from None
        if len(data) != length:  # Orthanc refuses it anyway; say why, and never serve it
            self.on_read_failure(uuid)
            raise failure("reading a range of", uuid, content_type,
                          IntegrityError(f"{len(data)} bytes instead of the {length} asked for")) from None
        return data

    def _cold(self, uuid: str, content_type: int, exc: Exception) -> str:
        """What RestoreOnRead adds to the message of a read refused for a cold class ("" otherwise)."""
        if self.cold_reads is None or not isinstance(exc, NeedsRestore):
            return ""
        return self.cold_reads.refused(uuid, content_type, exc)

    def remove(self, uuid: str, content_type: int, location: Location | None = None) -> None:
        self.on_remove(uuid)
        try:
            self.area.remove(uuid, content_type, location)
        except Exception as exc:  # noqa: BLE001
            # Orthanc drops the attachment from its index whatever happens here: retry in the background
            # so the object does not stay behind once the store answers again.
            self.reaper.schedule(uuid, content_type)
            raise failure("removing", uuid, content_type, exc) from None

    def v1(self):
        """(create, read, remove) for ``RegisterStorageArea``: whole reads, failures as exceptions."""

        def create(uuid, content_type, data):
            self.create(uuid, content_type, data)

        def read(uuid, content_type):
            return self.read(uuid, content_type)

        def remove(uuid, content_type):
            self.remove(uuid, content_type)

        return create, read, remove

    def v3(self):
        """(create, read, remove) for ``RegisterStorageArea3``: ranges, error codes, custom data."""
        codes = self.error_codes

        def create(uuid, content_type, compression_type, content, dicom_instance):
            try:
                location = self.create(uuid, content_type, content)
            except StorageFailure as failed:
                return codes.for_write(failed.cause), None
            # None, never b"": Orthanc fails the upload on empty custom data
            return codes.success, (location.to_custom_data() if location else None)

        def read(uuid, content_type, range_start, size, custom_data):
            try:
                return codes.success, self.read_range(uuid, content_type, range_start, size,
                                                      Location.from_custom_data(custom_data, uuid))
            except StorageFailure as failed:
                return codes.for_read(failed.cause), b""  # the wrapper wants bytes even on failure

        def remove(uuid, content_type, custom_data):
            try:
                self.remove(uuid, content_type, Location.from_custom_data(custom_data, uuid))
            except StorageFailure as failed:
                return codes.for_write(failed.cause)
            return codes.success

        return create, read, remove

    def _after_failed_create(self, uuid, content_type, data, recent):
        """The failed write's own object is an orphan; so is the upload's DICOM file written just before
        a failed header attachment (Orthanc gives up the upload without removing it).

        Decided without Orthanc's index: the header attachment is the DICOM file up to its pixel data,
        so it must be a prefix of the DICOM file written just before in the same thread. Anything that
        does not prove it is kept (an orphan left behind is better than a file lost).
        """
        self.reaper.schedule(uuid, content_type)
        if content_type != CONTENT_TYPE_DICOM_UNTIL_PIXEL_DATA or recent is None:
            return
        dicom_uuid, written, prefix = recent
        if dicom_uuid == uuid or time.monotonic() - written > _SAME_UPLOAD_SECONDS:
            return
        header, kept = (data, prefix)
        if self.storage_compression:
            header = _uncompressed(data, 64 * 1024 * 1024)
            kept = _uncompressed(prefix, len(header))
        size = min(len(header), len(kept))
        if size and header[:size] == kept[:size]:
            self.reaper.schedule(dicom_uuid, CONTENT_TYPE_DICOM)
        else:
            log.warning("attachment %s (DICOM) may be left behind by a failed upload; kept, as it cannot be "
                        "proved to belong to it", dicom_uuid)
