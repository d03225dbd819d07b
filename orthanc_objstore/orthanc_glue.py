"""The Orthanc glue: the only module that imports ``orthanc``.

It reads the configuration, builds the storage area, registers the storage callbacks at import
time, maps store errors to what Orthanc understands, sends the plugin's logs to Orthanc's log, and
dispatches Orthanc's started/stopped events to the parts that run background threads.

Two storage APIs, one set of callbacks (``StorageCallbacks``):

* ``RegisterStorageArea3`` (Python plugin >= 7.1 on Orthanc >= 1.12.8): range reads go to the
  area's ``read_range``; each failure returns an Orthanc error code (missing object: 404
  UnknownResource; damaged or undecryptable object: CorruptedFile; store unreachable: a plugin error
  code answered as 503); the attachment's ``Location`` is kept as its custom data.
* ``RegisterStorageArea`` (v1; Debian 12's Orthanc 1.10.1 with Python plugin 4.0): whole reads, and
  every failure is an exception, which Orthanc answers as 500.

The environment variable ``ORTHANC_OBJSTORE_STORAGE_API=v1`` forces the v1 API where v3 exists
(benchmarks, diagnosis).
"""

import inspect
import json
import logging
import os
import re
import threading
import time
import zlib

import orthanc

from . import __version__, build, config, move
from .area import Location
from .errors import ConfigError, IntegrityError, NotFound, StoreError, StoreUnavailable
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


class ReadFailures:
    """Recent failed reads, by attachment uuid: lets the archive guard tell a complete archive from one
    where Orthanc silently skipped files it could not read."""

    def __init__(self, keep_seconds=3600.0):
        self.keep_seconds = keep_seconds
        self._failures: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, uuid):
        now = time.monotonic()
        with self._lock:
            self._failures[uuid] = now
            if len(self._failures) > 10000:
                self._failures = {u: t for u, t in self._failures.items() if now - t < self.keep_seconds}

    def since(self, started, uuids) -> list[str]:
        with self._lock:
            return sorted(uuid for uuid in uuids if self._failures.get(uuid, -1.0) >= started)


class StorageCallbacks:
    """Orthanc's storage callbacks on top of an area. Every failure is logged once, then re-raised bare.

    ``create``/``read``/``read_range``/``remove`` hold the logic; ``v1()`` and ``v3()`` adapt them to
    the two registration APIs (arguments, return values, error codes) and add nothing else.
    """

    def __init__(self, area, reaper: OrphanReaper, error_codes: "ErrorCodes | None" = None):
        self.area = area
        self.reaper = reaper
        self.error_codes = error_codes or ErrorCodes()
        self.takes_hints = _takes_location(area)
        self.read_failures = ReadFailures()
        # The last DICOM file written by each OS thread. Not threading.local(): Orthanc's Python plugin
        # gives each callback a fresh Python thread state, which drops thread-local data in between.
        self._last_dicom: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def create(self, uuid, content_type, data) -> Location | None:
        try:
            location = self.area.create(uuid, content_type, data)
        except Exception as exc:  # noqa: BLE001 - any failure must fail the upload
            self._after_failed_create(uuid, content_type)
            raise _failure("writing", uuid, content_type, exc) from None
        if content_type == CONTENT_TYPE_DICOM:
            with self._lock:
                self._last_dicom[threading.get_ident()] = (uuid, time.monotonic())
        return location if isinstance(location, Location) and self.takes_hints else None

    def read(self, uuid, content_type, location=None):
        try:
            return self.area.read(uuid, content_type, **_hint(location))
        except Exception as exc:  # noqa: BLE001
            self.read_failures.record(uuid)
            raise _failure("reading", uuid, content_type, exc) from None

    def read_range(self, uuid, content_type, start, length, location=None):
        try:
            data = self.area.read_range(uuid, content_type, start, length, **_hint(location))
        except Exception as exc:  # noqa: BLE001
            self.read_failures.record(uuid)
            raise _failure("reading a range of", uuid, content_type, exc) from None
        if len(data) != length:  # Orthanc refuses it anyway; say why, and never serve it
            self.read_failures.record(uuid)
            raise _failure("reading a range of", uuid, content_type,
                           IntegrityError(f"{len(data)} bytes instead of the {length} asked for")) from None
        return data

    def remove(self, uuid, content_type, location=None):
        try:
            self.area.remove(uuid, content_type, **_hint(location))
        except Exception as exc:  # noqa: BLE001
            # Orthanc drops the attachment from its index whatever happens here: retry in the background
            # so the object does not stay behind once the store answers again.
            self.reaper.schedule(uuid, content_type)
            raise _failure("removing", uuid, content_type, exc) from None

    def v1(self):
        """(create, read, remove) for ``RegisterStorageArea``: whole reads, failures as exceptions."""
        return self.create, self.read, self.remove

    def v3(self):
        """(create, read, remove) for ``RegisterStorageArea3``: ranges, error codes, custom data."""
        codes = self.error_codes

        def create(uuid, content_type, compression_type, content, dicom_instance):
            try:
                location = self.create(uuid, content_type, content)
            except StorageFailure as failure:
                return codes.for_write(failure.cause), None
            # None, never b"": Orthanc fails the upload on empty custom data
            return codes.success, (location.to_custom_data() if location else None)

        def read(uuid, content_type, range_start, size, custom_data):
            try:
                return codes.success, self.read_range(uuid, content_type, range_start, size,
                                                      Location.from_custom_data(custom_data, uuid))
            except StorageFailure as failure:
                return codes.for_read(failure.cause), b""  # the wrapper wants bytes even on failure

        def remove(uuid, content_type, custom_data):
            try:
                self.remove(uuid, content_type, Location.from_custom_data(custom_data, uuid))
            except StorageFailure as failure:
                return codes.for_write(failure.cause)
            return codes.success

        return create, read, remove

    def _after_failed_create(self, uuid, content_type):
        """The failed write's own object, and the upload's DICOM file written just before, are orphans."""
        self.reaper.schedule(uuid, content_type)
        with self._lock:
            recent = self._last_dicom.pop(threading.get_ident(), None)
        if recent and recent[0] != uuid and time.monotonic() - recent[1] < _SAME_UPLOAD_SECONDS:
            self.reaper.schedule(recent[0], CONTENT_TYPE_DICOM, verify=True)


def _takes_location(area) -> bool:
    """Whether the area's reads and removes accept a ``location`` hint (the Area protocol says they do)."""
    try:
        return all("location" in inspect.signature(getattr(area, name)).parameters
                   for name in ("read", "read_range", "remove"))
    except (TypeError, ValueError, AttributeError):
        return False


def _hint(location):
    """The keyword passing a location hint to the area, only when there is one (areas need not take it)."""
    return {"location": location} if location is not None else {}


class StorageFailure(Exception):
    """What Orthanc sees when a storage operation fails: a message without SDK internals or secrets.

    ``cause`` is the original error (kept for choosing the error code, never shown)."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause


class ErrorCodes:
    """Orthanc error codes for failed storage operations (v3 API only; v1 can only say "plugin error").

    Reads: missing object -> UnknownResource (HTTP 404); damaged, truncated or undecryptable object
    -> CorruptedFile (500); store unreachable -> a plugin error code of our own answered as 503 with
    "object storage unavailable"; anything else -> StorageAreaPlugin (500). Writes and removes never
    answer 404 (a failed upload is not a missing resource).
    """

    def __init__(self, unavailable=None):
        codes = getattr(orthanc, "ErrorCode", None)

        def code(name, default):
            return int(getattr(codes, name, default))

        self.success = code("SUCCESS", 0)
        self.unknown_resource = code("UNKNOWN_RESOURCE", 17)
        self.corrupted_file = code("CORRUPTED_FILE", 20)
        self.storage_plugin = code("STORAGE_AREA_PLUGIN", 32)
        self.unavailable = unavailable if unavailable is not None else self.storage_plugin

    @classmethod
    def registered(cls) -> "ErrorCodes":
        """Registers the plugin's own "store unavailable" code (HTTP 503) with Orthanc, if it can."""
        return cls(unavailable=_register_error_code(1, 503, "orthanc-objstore: the object storage is "
                                                    "unavailable (network, timeout or throttling); retry later"))

    def for_read(self, exc) -> int:
        if isinstance(exc, NotFound):
            return self.unknown_resource
        return self.for_write(exc)

    def for_write(self, exc) -> int:
        if isinstance(exc, IntegrityError):
            return self.corrupted_file
        if isinstance(exc, StoreUnavailable):
            return self.unavailable
        return self.storage_plugin


def _register_error_code(code, http_status, message):
    """Orthanc's global code for a plugin error code, or None when it cannot be registered.

    The 7.1 wrapper of ``RegisterErrorCode`` treats the (nonzero) code Orthanc hands back as a
    failure and raises it as ``OrthancException(code, ...)``; a fixed wrapper would return it.
    Plugin error codes are >= 1000000, so any other outcome means "not registered".
    """
    register = getattr(orthanc, "RegisterErrorCode", None)
    if register is None:
        return None
    try:
        value = register(code, http_status, message)
    except orthanc.OrthancException as exc:
        value = exc.args[0] if exc.args else None
    except Exception:  # noqa: BLE001 - an unknown signature: fall back to the built-in codes
        return None
    return int(value) if isinstance(value, int) and value >= 1000000 else None


def _failure(action, uuid, content_type, exc) -> StorageFailure:
    if isinstance(exc, NotFound):
        message = f"{action} attachment {uuid} of type {content_type}: not found in the storage ({exc})"
    elif isinstance(exc, StoreError):
        message = f"{action} attachment {uuid} of type {content_type} failed: {exc}"
    else:
        message = f"{action} attachment {uuid} of type {content_type} failed: {type(exc).__name__}: {exc}"
        log.debug("unexpected failure", exc_info=exc)
    log.error("%s", message)
    return StorageFailure(message, exc)


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


def send_json_error(output, status: int, message: str, **details):
    """An error answer with a JSON body, on every Python plugin version (SendHttpStatus takes
    (code, body, size) up to 4.1 and (code, body) from 4.2 on)."""
    body = json.dumps({"HttpStatus": status, "Message": message, **details}, indent=2)
    try:
        output.SendHttpStatus(status, body, len(body.encode()))  # Python plugin <= 4.1: a str and its size
    except TypeError:
        output.SendHttpStatus(status, body.encode())


def _orthanc_error_status(exc) -> int:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return {17: 404, 8: 400, 9: 400, 10: 400, 11: 400, 12: 400}.get(code, 500)


class ArchiveGuard:
    """Archives that never come back silently incomplete (SPEC Q-1).

    Orthanc's archive and media jobs skip any instance whose file cannot be read ("An instance was
    removed after the job was issued") and still answer 200, so a store outage yields an empty or
    partial ZIP served as success. The plugin therefore answers the synchronous archive routes
    itself: it runs the same core job asynchronously (a synchronous call from a plugin deadlocks on
    Python plugin 4.0), waits for it, and serves the ZIP only if no file of the archive failed to be
    read meanwhile; otherwise it answers 503 naming the files. Asynchronous requests go to the core
    unchanged. The ZIP is held in memory while it is answered (Python plugin 4.0 cannot stream).

    Only on Orthanc < 1.11 (Debian 12's 1.10.1): Orthanc 1.13.0 crashes (SIGSEGV) as soon as a plugin
    starts an archive job through ``orthanc.RestApiPost`` (seen with /tools/create-archive and
    /studies/{id}/archive, with or without this plugin's storage), and 1.11/1.12 are untested, so the
    guard stays off there rather than risk taking Orthanc down.
    """

    ROUTE = "/(patients|studies|series)/([^/]+)/(archive|media)"

    @staticmethod
    def supported() -> bool:
        return not orthanc.CheckVersionAdvanced(1, 11, 0)

    def __init__(self, failures: ReadFailures, poll_seconds=0.05):
        self.failures = failures
        self.poll_seconds = poll_seconds

    def __call__(self, output, uri, **request):
        try:
            self._answer(output, uri, request)
        except orthanc.OrthancException as exc:
            send_json_error(output, _orthanc_error_status(exc), f"{uri}: {exc.args[-1] if exc.args else exc}")

    def _answer(self, output, uri, request):
        level, resource, kind = request["groups"]
        options = {}
        if request["method"] == "POST":
            try:
                options = json.loads(request.get("body") or b"{}")
            except ValueError:
                return send_json_error(output, 400, "the body must be a JSON object")
            if not isinstance(options, dict):
                return send_json_error(output, 400, "the body must be a JSON object")
            if options.get("Asynchronous") is True or options.get("Synchronous") is False:
                answer = orthanc.RestApiPost(uri, request.get("body") or b"{}")
                return output.AnswerBuffer(answer, "application/json")
            options = {k: v for k, v in options.items() if k not in ("Synchronous", "Asynchronous")}
        elif request["method"] == "GET":
            if "transcode" in request.get("get", {}):
                options["Transcode"] = request["get"]["transcode"]
        else:
            return output.SendMethodNotAllowed("GET,POST")

        instances = json.loads(orthanc.RestApiGet(f"/{level}/{resource}/instances"))
        uuids = {instance["FileUuid"] for instance in instances}
        started = time.monotonic()
        job = json.loads(orthanc.RestApiPost(uri, json.dumps({**options, "Asynchronous": True})))["ID"]
        while True:
            status = json.loads(orthanc.RestApiGet(f"/jobs/{job}"))
            if status["State"] in ("Success", "Failure"):
                break
            time.sleep(self.poll_seconds)
        if status["State"] == "Failure":
            return send_json_error(output, 500, f"the {kind} job failed: {status.get('ErrorDescription')}",
                                   Job=job)
        unreadable = self.failures.since(started, uuids)
        if unreadable:
            log.error("%s of %s %s: %d file(s) could not be read from the storage; no partial archive served",
                      kind, level, resource, len(unreadable))
            return send_json_error(output, 503, f"{len(unreadable)} file(s) of this {kind} could not be read "
                                   "from the storage; no partial archive is served, retry when the storage "
                                   "is back", Attachments=unreadable)
        output.SetHttpHeader("Content-Disposition", f'attachment; filename="{resource}.zip"')
        output.AnswerBuffer(orthanc.RestApiGet(f"/jobs/{job}/archive"), "application/zip")


STORAGE_API_VARIABLE = "ORTHANC_OBJSTORE_STORAGE_API"


def register_storage(callbacks: StorageCallbacks) -> str:
    """Registers the callbacks with Orthanc; returns the API used, for the start-up log line.

    ``RegisterStorageArea3`` when the Python plugin has it (unless ORTHANC_OBJSTORE_STORAGE_API=v1),
    else ``RegisterStorageArea``.
    """
    forced = os.environ.get(STORAGE_API_VARIABLE, "").strip().lower()
    if forced not in ("", "auto", "v1", "v3"):
        log.warning("%s=%r is not one of auto, v1, v3; using auto", STORAGE_API_VARIABLE, forced)
        forced = ""
    if hasattr(orthanc, "RegisterStorageArea3") and forced != "v1":
        callbacks.error_codes = ErrorCodes.registered()
        orthanc.RegisterStorageArea3(*callbacks.v3())
        return "RegisterStorageArea3 (v3: range reads, error codes, custom data)"
    if forced == "v3":
        log.warning("%s=v3 asked for, but this Python plugin has no RegisterStorageArea3 (needs plugin 7.1 "
                    "and Orthanc 1.12.8 or newer); using v1", STORAGE_API_VARIABLE)
    orthanc.RegisterStorageArea(*callbacks.v1())
    suffix = f", forced by {STORAGE_API_VARIABLE}" if forced == "v1" and hasattr(orthanc, "RegisterStorageArea3") else ""
    return f"RegisterStorageArea (v1, whole reads{suffix})"


def install(started=None):
    """Called once when Orthanc imports the plugin: configure, build, register. Raises to stop Orthanc.
    ``started`` is when the plugin file began loading (time.monotonic), for the start-up time log."""
    started = time.monotonic() if started is None else started
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
    if ArchiveGuard.supported():
        orthanc.RegisterRestCallback(ArchiveGuard.ROUTE, ArchiveGuard(callbacks.read_failures))
    else:
        log.info("archive guard off on this Orthanc (>= 1.11): archives of files the storage cannot read are "
                 "served by Orthanc's own job, which skips them")
    lifecycle = Lifecycle()
    lifecycle.on_stopped.append(reaper.stop)
    install_move_storage(area, plugin_config, lifecycle)
    log.warning("orthanc-objstore %s: storage area in %r through %s; started in %.3f s", __version__, area, api,
                time.monotonic() - started)
    return callbacks


# ----------------------------------------------------------------------------------------------------
# Move storage, move jobs under /jobs, and "where is my file" (REST routes; the job itself is move.py)

MOVE_WORKERS = 8
JOBS_FOLDER = "objstore-jobs"  # inside StorageDirectory, which hybrid mode needs persistent anyway
_RESOURCE_ID = re.compile(r"^[0-9a-fA-F-]{1,100}$")


class RestIndex:
    """``move.OrthancIndex`` through Orthanc's internal REST API (never a route run as a job)."""

    def _get(self, uri):
        try:
            return json.loads(orthanc.RestApiGet(uri))
        except orthanc.OrthancException:
            return None

    def level_of(self, resource_id):
        if not _RESOURCE_ID.match(resource_id):
            return None
        for level in move.RESOLUTION_ORDER:
            if self._get(f"/{move.LEVELS[level][1]}/{resource_id}") is not None:
                return level
        return None

    def children(self, level, resource_id):
        child = move.LEVELS[level][2]
        if child is None:
            return []
        resource = self._get(f"/{move.LEVELS[level][1]}/{resource_id}") or {}
        return list(resource.get(move.LEVELS[child][0], []))

    def attachments(self, level, resource_id):
        folder = f"/{move.LEVELS[level][1]}/{resource_id}"
        found = []
        for name, kind in sorted((self._get(f"{folder}/attachments?full") or {}).items(), key=lambda item: item[1]):
            info = self._get(f"{folder}/attachments/{kind}/info")
            if info is None:
                continue  # removed meanwhile
            found.append(move.Attachment(f"{move.LEVELS[level][1]}/{resource_id}", info["Uuid"],
                                         move.plugin_content_type(kind), int(info["CompressedSize"]),
                                         info.get("CompressedMD5", "")))
        return found


def _answer_json(output, value):
    output.AnswerBuffer(json.dumps(value, indent=2) + "\n", "application/json")


def _rest_route(handler):
    """Wraps a REST callback so that a bug answers a JSON 500 instead of the plugin engine's bare error."""

    def callback(output, uri, **request):
        try:
            handler(output, uri, **request)
        except Exception as exc:  # noqa: BLE001
            log.exception("error in %s %s", request.get("method"), uri)
            send_json_error(output, 500, f"internal error in orthanc-objstore: {type(exc).__name__}")

    return callback


class MoveStorageRoutes:
    """``POST /move-storage``, the move jobs under ``/jobs``, and ``GET /{level}/{id}/storage-location``."""

    def __init__(self, area, manager, hybrid_mode):
        self.area = area
        self.manager = manager  # None when hybrid mode is off
        self.hybrid_mode = hybrid_mode
        self.index = RestIndex()

    def register(self):
        orthanc.RegisterRestCallback("/move-storage", _rest_route(self.move_storage))
        orthanc.RegisterRestCallback("/(patients|studies|series|instances)/([^/]+)/storage-location",
                                     _rest_route(self.storage_location))
        if self.manager is not None:
            job_id = f"({move.JOB_ID_PREFIX}[0-9a-f-]+)"
            orthanc.RegisterRestCallback("/jobs", _rest_route(self.list_jobs))
            orthanc.RegisterRestCallback(f"/jobs/{job_id}", _rest_route(self.job))
            orthanc.RegisterRestCallback(f"/jobs/{job_id}/cancel", _rest_route(self.cancel_job))

    def move_storage(self, output, uri, **request):
        if request["method"] != "POST":
            output.SendMethodNotAllowed("POST")
            return
        if self.manager is None:
            send_json_error(output, 400, "POST /move-storage only works in hybrid mode; this Orthanc runs with "
                            f"HybridMode {self.hybrid_mode!r}: set HybridMode to \"WriteToFileSystem\" or "
                            "\"WriteToObjectStorage\" to use it")
            return
        try:
            parsed = move.parse_request(request.get("body", b""))
            groups = move.resolve(self.index, parsed.resources)
        except move.BadRequest as exc:
            send_json_error(output, 400, str(exc))
            return
        except LookupError as exc:
            unknown = exc.args[0]
            send_json_error(output, 404, f"unknown resource(s): {', '.join(map(repr, unknown))}; expected ids of "
                            "patients, studies, series or instances in this Orthanc", UnknownResources=unknown)
            return
        job = self.manager.submit(groups, parsed.target, parsed.priority)
        if parsed.asynchronous:
            _answer_json(output, {"ID": job.id, "Path": f"/jobs/{job.id}"})
            return
        while not job.finished.wait(0.5):  # waiting releases the GIL; the job runs in its own threads
            if self.manager.stopping:
                send_json_error(output, 503, "Orthanc is stopping; the move job resumes at the next start",
                                ID=job.id, Path=f"/jobs/{job.id}")
                return
        status = job.status()
        if status["State"] == move.SUCCESS:
            _answer_json(output, status["Content"])
        else:
            send_json_error(output, 500, status["ErrorDescription"], ErrorCode=status["ErrorCode"], ID=job.id,
                            Content=status["Content"])

    def list_jobs(self, output, uri, **request):
        if request["method"] != "GET":
            output.SendMethodNotAllowed("GET")
            return
        core = json.loads(orthanc.RestApiGet("/jobs"))
        if "expand" in request.get("get", {}):
            expanded = []
            for job_id in core:
                try:
                    expanded.append(json.loads(orthanc.RestApiGet(f"/jobs/{job_id}")))
                except orthanc.OrthancException:
                    continue  # removed from the history meanwhile
            _answer_json(output, expanded + [job.status() for job in self.manager.jobs()])
        else:
            _answer_json(output, core + [job.id for job in self.manager.jobs()])

    def job(self, output, uri, **request):
        if request["method"] != "GET":
            output.SendMethodNotAllowed("GET")
            return
        job = self.manager.get(request["groups"][0])
        if job is None:
            send_json_error(output, 404, f"no job {request['groups'][0]!r}")
        else:
            _answer_json(output, job.status())

    def cancel_job(self, output, uri, **request):
        if request["method"] != "POST":
            output.SendMethodNotAllowed("POST")
            return
        job_id = request["groups"][0]
        job = self.manager.get(job_id)
        if job is None:
            send_json_error(output, 404, f"no job {job_id!r}")
        elif not self.manager.cancel(job_id):
            send_json_error(output, 400, f"job {job_id} has already finished ({job.state})")
        else:
            _answer_json(output, {})

    def storage_location(self, output, uri, **request):
        if request["method"] != "GET":
            output.SendMethodNotAllowed("GET")
            return
        folder, resource_id = request["groups"]
        level = move.LEVEL_BY_FOLDER[folder]
        if not _RESOURCE_ID.match(resource_id) or self.index._get(f"/{folder}/{resource_id}") is None:
            send_json_error(output, 404, f"unknown {level.lower()} {resource_id!r}")
            return
        _answer_json(output, {"ID": resource_id, "Type": level,
                              "Attachments": move.storage_locations(self.index, self.area, level, resource_id)})


def install_move_storage(area, plugin_config, lifecycle):
    """Registers the move-storage and storage-location routes; in hybrid mode, the move jobs' worker too."""
    manager = None
    if hasattr(area, "side"):
        # Replicas sharing one StorageDirectory (scale-out with hybrid mode) each keep their own jobs, under
        # their DatabaseServerIdentifier: a replica never resumes another's job.
        common = plugin_config.common
        folder = os.path.join(os.path.abspath(common.storage_directory), JOBS_FOLDER, *(
            [re.sub(r"[^A-Za-z0-9._-]", "_", common.server_identifier).lstrip(".")] if common.server_identifier else []))
        manager = move.JobManager(RestIndex(), area.side, move.FileJobStore(folder), workers=MOVE_WORKERS)
        manager.load()  # persisted jobs answer over REST at once; their workers start with Orthanc
        lifecycle.on_started.append(manager.start)
        lifecycle.on_stopped.append(manager.stop)
    MoveStorageRoutes(area, manager, plugin_config.common.hybrid_mode).register()
    return manager
