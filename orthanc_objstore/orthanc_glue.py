"""The Orthanc glue: the only module that imports ``orthanc``.

It reads the configuration, builds the storage area, registers the storage callbacks at import
time (``RegisterStorageArea`` on every Orthanc; ``register_storage`` is the seam where
``RegisterStorageArea3`` is chosen when the Python plugin offers it), maps store errors to what
Orthanc understands, sends the plugin's logs to Orthanc's log, and dispatches Orthanc's
started/stopped events to the parts that run background threads.
"""

import json
import logging
import threading
import time
import zlib

import orthanc

from . import __version__, build, config
from .errors import ConfigError, NotFound, StoreError
from .naming import CONTENT_TYPE_DICOM
from .orphans import OrphanReaper

log = logging.getLogger("orthanc_objstore")

# A failed create within this many seconds of a successful DICOM create in the same thread belongs
# to the same upload (Orthanc writes an upload's attachments one after the other in one thread).
_SAME_UPLOAD_SECONDS = 60.0


class OrthancLogHandler(logging.Handler):
    """Sends Python log records to Orthanc's log (debug records are dropped, as Orthanc has no such level)."""

    def emit(self, record):
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                orthanc.LogError(message)
            elif record.levelno >= logging.WARNING:
                orthanc.LogWarning(message)
            elif record.levelno >= logging.INFO:
                orthanc.LogInfo(message)
        except Exception:  # noqa: BLE001 - logging must never break a storage operation
            pass


def _setup_logging():
    handler = OrthancLogHandler()
    handler.setFormatter(logging.Formatter("orthanc-objstore: %(message)s"))
    for name in ("orthanc_objstore", "botocore", "boto3", "s3transfer", "azure", "google"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    log.setLevel(logging.INFO)
    for name in ("botocore", "boto3", "s3transfer", "azure", "google", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


class StorageCallbacks:
    """Orthanc's storage callbacks on top of an area. Every failure is logged once, then re-raised bare."""

    def __init__(self, area, reaper: OrphanReaper):
        self.area = area
        self.reaper = reaper
        # The last DICOM file written by each OS thread. Not threading.local(): Orthanc's Python plugin
        # gives each callback a fresh Python thread state, which drops thread-local data in between.
        self._last_dicom: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def create(self, uuid, content_type, data):
        try:
            self.area.create(uuid, content_type, data)
        except Exception as exc:  # noqa: BLE001 - any failure must fail the upload
            self._after_failed_create(uuid, content_type)
            raise _failure("writing", uuid, content_type, exc) from None
        if content_type == CONTENT_TYPE_DICOM:
            with self._lock:
                self._last_dicom[threading.get_ident()] = (uuid, time.monotonic())

    def read(self, uuid, content_type):
        try:
            return self.area.read(uuid, content_type)
        except Exception as exc:  # noqa: BLE001
            raise _failure("reading", uuid, content_type, exc) from None

    def read_range(self, uuid, content_type, start, length):
        try:
            return self.area.read_range(uuid, content_type, start, length)
        except Exception as exc:  # noqa: BLE001
            raise _failure("reading a range of", uuid, content_type, exc) from None

    def remove(self, uuid, content_type):
        try:
            self.area.remove(uuid, content_type)
        except Exception as exc:  # noqa: BLE001
            raise _failure("removing", uuid, content_type, exc) from None

    def _after_failed_create(self, uuid, content_type):
        """The failed write's own object, and the upload's DICOM file written just before, are orphans."""
        self.reaper.schedule(uuid, content_type)
        with self._lock:
            recent = self._last_dicom.pop(threading.get_ident(), None)
        if recent and recent[0] != uuid and time.monotonic() - recent[1] < _SAME_UPLOAD_SECONDS:
            self.reaper.schedule(recent[0], CONTENT_TYPE_DICOM, verify=True)


class StorageFailure(Exception):
    """What Orthanc sees when a storage operation fails: a message without SDK internals or secrets."""


def _failure(action, uuid, content_type, exc) -> StorageFailure:
    if isinstance(exc, NotFound):
        message = f"{action} attachment {uuid} of type {content_type}: not found in the storage ({exc})"
    elif isinstance(exc, StoreError):
        message = f"{action} attachment {uuid} of type {content_type} failed: {exc}"
    else:
        message = f"{action} attachment {uuid} of type {content_type} failed: {type(exc).__name__}: {exc}"
        log.debug("unexpected failure", exc_info=exc)
    log.error("%s", message)
    return StorageFailure(message)


def _is_dicom_referenced(area, storage_compression):
    """Builds the check the orphan reaper uses: does an instance in Orthanc's index use this DICOM file?"""

    def is_referenced(uuid, content_type):
        try:
            data = area.read(uuid, content_type)
        except NotFound:
            return False
        if storage_compression:
            data = zlib.decompress(data[8:]) if len(data) > 8 else b""
        try:
            tags = json.loads(orthanc.DicomBufferToJson(data, orthanc.DicomToJsonFormat.SHORT,
                                                        orthanc.DicomToJsonFlags.NONE, 256))
            sop_instance_uid = tags["0008,0018"]
        except Exception:  # noqa: BLE001 - unreadable: keep the object, never guess
            log.warning("attachment %s looks left behind by a failed upload but cannot be parsed; kept", uuid)
            return True
        try:
            instance = orthanc.LookupInstance(sop_instance_uid)
            info = json.loads(orthanc.RestApiGet(f"/instances/{instance}/attachments/dicom/info"))
        except orthanc.OrthancException:
            return False
        return info.get("Uuid") == uuid

    return is_referenced


class Lifecycle:
    """Orthanc's ORTHANC_STARTED / ORTHANC_STOPPED events, fanned out to whoever runs threads."""

    def __init__(self):
        self.on_started = []
        self.on_stopped = []
        orthanc.RegisterOnChangeCallback(self._on_change)

    def _on_change(self, change_type, level, resource):
        handlers = {orthanc.ChangeType.ORTHANC_STARTED: self.on_started,
                    orthanc.ChangeType.ORTHANC_STOPPED: self.on_stopped}.get(change_type, ())
        for handler in handlers:
            try:
                handler()
            except Exception:  # noqa: BLE001
                log.exception("error while handling Orthanc's %s event", change_type)


def register_storage(callbacks: StorageCallbacks) -> str:
    """Registers the callbacks with Orthanc; returns the API used, for the start-up log line."""
    orthanc.RegisterStorageArea(callbacks.create, callbacks.read, callbacks.remove)
    return "RegisterStorageArea (v1, whole reads)"


def install():
    """Called once when Orthanc imports the plugin: configure, build, register. Raises to stop Orthanc."""
    _setup_logging()
    configuration = json.loads(orthanc.GetConfiguration())
    try:
        plugin_config, warnings = config.parse(configuration)
        for warning in warnings:
            log.warning("%s", warning)
        if plugin_config is None:
            return None
        area = build.build_area(plugin_config)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("invalid configuration: %s", problem)
        raise RuntimeError("orthanc-objstore: invalid configuration, see the errors above; Orthanc stops") from None
    reaper = OrphanReaper(area, _is_dicom_referenced(area, configuration.get("StorageCompression") is True))
    callbacks = StorageCallbacks(area, reaper)
    api = register_storage(callbacks)
    lifecycle = Lifecycle()
    lifecycle.on_stopped.append(reaper.stop)
    log.warning("orthanc-objstore %s: storage area in %r through %s", __version__, area, api)
    return callbacks
