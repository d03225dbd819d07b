"""The Orthanc glue: the only module that imports ``orthanc``; it wires the Orthanc-free parts to Orthanc.

At import time (``install``): read the configuration, build the storage area, register the storage
callbacks (``orthanc_side.callbacks``: v3 through ``RegisterStorageArea3`` on Python plugin >= 7.1 with Orthanc
>= 1.12.8, else v1 through ``RegisterStorageArea``; ``ORTHANC_OBJSTORE_STORAGE_API=v1`` forces v1),
register the REST routes (``orthanc_side.routes``, ``orthanc_side.archive_guard``), send the plugin's logs to Orthanc's
log, and dispatch Orthanc's started/stopped events to the parts that run background threads.

Access to Orthanc's REST API goes through one port (``index.OrthancApi``) that never waits on
Orthanc's index while it holds the GIL (SPEC Q-5): Orthanc's own HTTP server on 127.0.0.1
(``port.loopback``), or the SDK's in-process calls only where the Python plugin releases the GIL
during them (``"Python": {"AllowThreads": true}`` on plugin 7.1 and newer).
"""

import contextlib
import json
import logging
import os
import re
import threading
import time

import orthanc

from . import __version__, build
from .config import sections as config
from .errors import ConfigError
from .jobs.adopt import Adopter
from .jobs.adopt_jobs import AdoptManager
from .jobs.indexer import Indexer
from .jobs.journal import FileJobStore
from .jobs.prefetch import Prefetcher
from .jobs.restore import RestoreManager
from .jobs.scheduler import JobManager
from .jobs.tiering import TieringPolicy
from .metrics.registry import Metrics, Publisher
from .orthanc_side.adopt import AdoptRoutes
from .orthanc_side.archive_guard import ROUTE as ARCHIVE_ROUTE
from .orthanc_side.archive_guard import ArchiveGuard, ReadFailures
from .orthanc_side.callbacks import ErrorCodes, StorageCallbacks
from .orthanc_side.cold import ColdReads, RestorePolicy
from .orthanc_side.orphans import OrphanReaper
from .orthanc_side.rest import route
from .orthanc_side.restore import RestoreRoutes
from .orthanc_side.routes import CoreJobs, MoveStorageRoutes
from .orthanc_side.status import ROUTE as STATUS_ROUTE
from .orthanc_side.status import StatusRoute
from .orthanc_side.viewer_triggers import ViewerTriggers
from .port.index import OrthancApi, OrthancCallError, RestIndex
from .port.loopback import LoopbackApi, LoopbackSettings

log = logging.getLogger("orthanc_objstore")

STORAGE_API_VARIABLE = "ORTHANC_OBJSTORE_STORAGE_API"
MOVE_WORKERS = 8
METRICS_VARIABLE = "ORTHANC_OBJSTORE_METRICS"  # "publish" / "off": override the choice of metrics_publisher()
METRICS_ROUTE = "/objstore/metrics-prometheus"
JOBS_FOLDER = "objstore-jobs"  # inside StorageDirectory, which hybrid mode needs persistent anyway
RESTORE_JOBS_FOLDER = "restore"  # restore jobs, inside the jobs folder
ADOPT_JOBS_FOLDER = "adopt"  # asynchronous adoptions (and the indexer's), inside the jobs folder


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


class InProcessApi:
    """``index.OrthancApi`` through the SDK's ``RestApiGet``/``RestApiPost``: only when they release the GIL."""

    def get_json(self, uri):
        try:
            return json.loads(_call(orthanc.RestApiGet, uri))
        except OrthancCallError as exc:
            if exc.status == 404:
                return None
            raise

    def post_json(self, uri, body):
        return json.loads(_call(orthanc.RestApiPost, uri, body))

    def get_bytes(self, uri):
        return _call(orthanc.RestApiGet, uri)

    def delete(self, uri):
        try:
            _call(orthanc.RestApiDelete, uri)
        except OrthancCallError as exc:
            if exc.status != 404:
                raise

    def handler_slot(self):
        return contextlib.nullcontext()  # in-process calls hold no HTTP thread of Orthanc's


def _call(function, uri, *arguments):
    try:
        return function(uri, *arguments)
    except orthanc.OrthancException as exc:
        raise OrthancCallError(_status(exc), f"{uri}: {exc.args[-1] if exc.args else exc}") from None


def _status(exc) -> int:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
    return {17: 404, 8: 400, 9: 400, 10: 400, 11: 400, 12: 400}.get(code, 500)


def threads_allowed(configuration: dict) -> bool:
    """Whether the Python plugin releases the GIL during SDK calls: ``"Python": {"AllowThreads": true}``,
    read by plugin 4.3 and newer (recognised here by an SDK function of 7.1, the oldest release tested)."""
    section = configuration.get("Python")
    return (isinstance(section, dict) and section.get("AllowThreads") is True
            and hasattr(orthanc, "RegisterStorageArea3"))


def orthanc_api(configuration: dict) -> tuple[OrthancApi, str]:
    """The port, and how it reaches Orthanc (for the start-up log line)."""
    if threads_allowed(configuration):
        return InProcessApi(), "in process (Python.AllowThreads is on)"
    settings = LoopbackSettings.from_configuration(configuration)
    if not settings.enabled:
        log.warning("HttpServerEnabled is false: /move-storage, storage-location and the archive guard answer 503 "
                    "(orthanc-objstore reaches Orthanc's index through its HTTP server unless Python.AllowThreads "
                    "is on, see the documentation, Reliability)")
    return LoopbackApi(settings), f"over {settings!r} (Python.AllowThreads is off or not supported)"


def error_codes() -> ErrorCodes:
    """Orthanc's error codes, with the plugin's own "store unavailable" code (HTTP 503) if it registers."""

    def code(name, default):
        return int(getattr(orthanc.ErrorCode, name, default))

    plugin = code("STORAGE_AREA_PLUGIN", 32)
    unavailable = _register_error_code(1, 503, "orthanc-objstore: the object storage is unavailable (network, "
                                       "timeout or throttling); retry later")
    needs_restore = _register_error_code(2, 503, "orthanc-objstore: this file is in a cold storage class (S3 "
                                         "GLACIER or DEEP_ARCHIVE, Azure Archive) and must be restored before it "
                                         "can be read: POST /objstore/restore {\"Resources\": [\"<id>\"]}; the "
                                         "Orthanc log names the object and its class")
    return ErrorCodes(code("SUCCESS", 0), code("UNKNOWN_RESOURCE", 17), code("CORRUPTED_FILE", 20), plugin,
                      plugin if unavailable is None else unavailable,
                      plugin if needs_restore is None else needs_restore)


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


class Lifecycle:
    """Orthanc's ORTHANC_STARTED / ORTHANC_STOPPED events, fanned out to whoever runs threads."""

    def __init__(self):
        self.on_started = []
        self.on_stopped = []
        self.on_change = []  # (change_type, resource) of every other change
        orthanc.RegisterOnChangeCallback(self._on_change)

    def _on_change(self, change_type, level, resource):
        for listener in self.on_change:
            try:
                listener(change_type, resource)
            except Exception:  # noqa: BLE001
                log.exception("error while handling Orthanc's change %s", change_type)
        handlers = {orthanc.ChangeType.ORTHANC_STARTED: self.on_started,
                    orthanc.ChangeType.ORTHANC_STOPPED: self.on_stopped}.get(change_type, ())
        for handler in handlers:
            try:
                handler()
            except Exception:  # noqa: BLE001
                log.exception("error while handling Orthanc's %s event", change_type)


def metrics_publisher(metrics: Metrics, configuration: dict) -> tuple[Publisher | None, str]:
    """Publishes the plugin's metrics into /tools/metrics-prometheus where ``SetMetricsValue`` is safe.

    Orthanc up to 1.12.1 runs every plugin service under one mutex that other plugins' calls (e.g.
    ``GetDicomForInstance``, which reads from this storage) hold while they wait for the GIL; a thread
    holding the GIL inside ``SetMetricsValue`` then freezes Orthanc (reproduced on 1.10.1 + 4.0). Since
    1.12.2 that mutex only guards a reference count; with ``AllowThreads`` the GIL is released meanwhile.
    """
    forced = os.environ.get(METRICS_VARIABLE, "").strip().lower()
    if forced not in ("", "publish", "off"):
        log.warning("%s=%r is not one of publish, off; ignored", METRICS_VARIABLE, forced)
        forced = ""
    safe = orthanc.CheckVersionAdvanced(1, 12, 2) or threads_allowed(configuration)
    if forced == "off" or not (safe or forced == "publish"):
        return None, f"only in {METRICS_ROUTE}" + ("" if forced else " (Orthanc < 1.12.2 without AllowThreads)")
    integer = getattr(orthanc, "SetMetricsIntegerValue", None)  # int64 (plugin 7.1); else float32

    def publish(name, value):
        if integer is not None and float(value).is_integer():
            integer(name, int(value), orthanc.MetricsType.DEFAULT)
        else:
            orthanc.SetMetricsValue(name, float(value), orthanc.MetricsType.DEFAULT)

    return Publisher(metrics, publish), f"in /tools/metrics-prometheus and {METRICS_ROUTE}"


def storage_api() -> str:
    """"v3" when the Python plugin has ``RegisterStorageArea3`` (unless ORTHANC_OBJSTORE_STORAGE_API=v1), else "v1"."""
    forced = os.environ.get(STORAGE_API_VARIABLE, "").strip().lower()
    if forced not in ("", "auto", "v1", "v3"):
        log.warning("%s=%r is not one of auto, v1, v3; using auto", STORAGE_API_VARIABLE, forced)
        forced = ""
    if hasattr(orthanc, "RegisterStorageArea3") and forced != "v1":
        return "v3"
    if forced == "v3":
        log.warning("%s=v3 asked for, but this Python plugin has no RegisterStorageArea3 (needs plugin 7.1 "
                    "and Orthanc 1.12.8 or newer); using v1", STORAGE_API_VARIABLE)
    return "v1"


def register_storage(callbacks: StorageCallbacks, version: str) -> str:
    """Registers the callbacks with Orthanc through ``version``'s API; returns what was used, for the log."""
    if version == "v3":
        orthanc.RegisterStorageArea3(*callbacks.v3())
        return "RegisterStorageArea3 (v3: range reads, error codes, custom data)"
    orthanc.RegisterStorageArea(*callbacks.v1())
    suffix = f", forced by {STORAGE_API_VARIABLE}" if hasattr(orthanc, "RegisterStorageArea3") else ""
    return f"RegisterStorageArea (v1, whole reads{suffix})"


def register_prefetch(configuration: dict, settings, api, area, cache, lifecycle: Lifecycle) -> str:
    """Registers the HTTP request filter that schedules prefetches (``Prefetch``); returns what it did.

    The filter only matches the URI and queues (``Prefetcher.schedule`` never blocks and calls no
    ``orthanc.*``); the prefetcher's thread resolves it through the port (SPEC Q-5). Always allows the
    request. The filter's arguments differ between plugin versions (4.0: ``uri, **request``; 7.1:
    ``uri, method, ip, headers, get``): it takes both shapes."""
    register = getattr(orthanc, "RegisterIncomingHttpRequestFilter", None)
    if settings is None or register is None:
        return "prefetch off" if settings is None else "prefetch off (no RegisterIncomingHttpRequestFilter)"
    dicomweb = configuration.get("DicomWeb")
    root = dicomweb.get("Root", "/dicom-web/") if isinstance(dicomweb, dict) else "/dicom-web/"
    triggers = ViewerTriggers(root if isinstance(root, str) else "/dicom-web/")
    prefetcher = Prefetcher(api, area, cache, settings.max_in_flight, settings.max_bytes_in_flight_mb * 1024 * 1024)
    lifecycle.on_started.append(prefetcher.start)
    lifecycle.on_stopped.insert(0, prefetcher.stop)

    def request_filter(uri, *arguments, **request):
        try:
            method = arguments[0] if arguments else request.get("method")
            target = triggers.target(method, uri)
            if target is not None:
                prefetcher.schedule(target)
        except Exception:  # noqa: BLE001 - a prefetch must never refuse or break a request
            pass
        return True

    register(request_filter)
    return f"{prefetcher!r} on viewer requests"


def jobs_folder(common) -> str:
    """Replicas sharing one StorageDirectory (scale-out with hybrid mode) each keep their own jobs, under
    their DatabaseServerIdentifier: a replica never resumes another's job."""
    own = [re.sub(r"[^A-Za-z0-9._-]", "_", common.server_identifier).lstrip(".")] if common.server_identifier else []
    return os.path.join(os.path.abspath(common.storage_directory), JOBS_FOLDER, *own)


def register_adoption(adoption, api, lifecycle, common, on_outcome) -> AdoptManager | None:
    """POST /objstore/adopt and its siblings, the adopt jobs and the indexer; returns the jobs' manager (None when
    the storage cannot adopt). The registry of adopted attachments (a removal on 1.10.1 learns from it whether an
    adopted object is owned) is listed now, before Orthanc answers anything, and its entries are read in the
    background once Orthanc has started; with no adoption the listing is all."""
    adopter, jobs = None, None
    if adoption is not None:
        adopter = Adopter(api, adoption.area, adoption.registry, adoption.listing, adoption.root_path,
                          on_outcome=on_outcome)
        try:
            entry_keys = adoption.registry.entry_keys()
        except Exception as exc:  # noqa: BLE001 - read again in the background, once Orthanc has started
            log.warning("orthanc-objstore: the registry of adopted objects could not be listed (%s); listed "
                        "again once Orthanc has started", exc)
            entry_keys = None

        def load():
            try:
                count = adopter.load(entry_keys)
            except Exception as exc:  # noqa: BLE001 - only removals of owned adopted objects depend on it
                log.warning("orthanc-objstore: the registry of adopted objects could not be read (%s)", exc)
                return
            if count:
                log.info("orthanc-objstore: %d adopted objects in the registry", count)

        if entry_keys != []:
            lifecycle.on_started.append(
                lambda: threading.Thread(target=load, name="objstore-adopted", daemon=True).start())
        jobs = AdoptManager(adopter, FileJobStore(os.path.join(jobs_folder(common), ADOPT_JOBS_FOLDER)))
        jobs.load()  # persisted jobs answer over REST at once; they run once Orthanc has started
        lifecycle.on_started.append(jobs.start)
        lifecycle.on_stopped.append(jobs.stop)
        if common.indexer is not None and common.indexer.enabled:
            indexer = Indexer(jobs, common.indexer)
            lifecycle.on_started.append(indexer.start)
            lifecycle.on_stopped.insert(0, indexer.stop)
            log.warning("orthanc-objstore: %r", indexer)
    elif common.indexer is not None and common.indexer.enabled:
        log.error("orthanc-objstore: the Indexer section is ignored: this storage cannot list its objects, so it "
                  "cannot adopt them")
    for pattern, callback in AdoptRoutes(api, adopter, jobs).routes():
        orthanc.RegisterRestCallback(pattern, callback)
    return jobs


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
        metrics = build.storage_metrics(plugin_config)
        cache = build.read_cache(plugin_config.common)
        storage = build.build_storage(plugin_config, metrics=metrics, cache=cache, defer_deletions=True)
        area, deletions = storage.area, storage.deletions
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("invalid configuration: %s", problem)
        raise RuntimeError("orthanc-objstore: invalid configuration, see the errors above; Orthanc stops") from None
    api, how = orthanc_api(configuration)
    lifecycle = Lifecycle()
    reaper = OrphanReaper(storage.immediate or area)  # orphans of failed uploads: retried by the reaper, as before
    lifecycle.on_stopped.append(reaper.stop)
    metrics.watch_orphans(reaper.pending)
    if deletions is not None:  # removals queued, drained in batches from start to stop
        lifecycle.on_started.append(deletions.start)
        lifecycle.on_stopped.append(deletions.stop)
    orthanc.RegisterRestCallback(STATUS_ROUTE, route(StatusRoute(deletions, reaper.pending), "GET"))
    publisher, metrics_where = metrics_publisher(metrics.metrics, configuration)
    if publisher is not None:
        lifecycle.on_started.append(publisher.start)
        lifecycle.on_stopped.append(publisher.stop)
    orthanc.RegisterRestCallback(METRICS_ROUTE, route(lambda output, request: output.AnswerBuffer(
        metrics.metrics.prometheus_text(), "text/plain; version=0.0.4"), "GET"))
    read_failures = ReadFailures()
    version = storage_api()
    common = plugin_config.common
    if common.encryption is not None:  # which keys came from a key service (the key itself is never logged)
        for key in (common.encryption.master_key, *common.encryption.previous_master_keys):
            if key.unwrapped_by:
                log.warning("orthanc-objstore: master key id %d from %r unwrapped through %s",
                            key.id, key.path, key.unwrapped_by)
    policy = RestorePolicy(common.restore_on_read, common.restore_days, common.restore_tier)
    callbacks = StorageCallbacks(area, reaper, error_codes() if version == "v3" else ErrorCodes(),
                                 storage_compression=common.storage_compression,
                                 on_read_failure=read_failures.record,
                                 cold_reads=ColdReads(area, policy, metrics.restore_step),
                                 on_remove=cache.forget if cache is not None else None)
    registered = register_storage(callbacks, version)
    viewer = "read cache off"
    if cache is not None:
        metrics.watch_cache(cache)
        viewer = f"{cache!r}, " + register_prefetch(configuration, plugin_config.common.prefetch, api, area, cache,
                                                    lifecycle)
    if not orthanc.CheckVersionAdvanced(1, 11, 0):
        orthanc.RegisterRestCallback(ARCHIVE_ROUTE, route(ArchiveGuard(api, read_failures), "GET", "POST"))
    else:
        log.info("archive guard off on this Orthanc (>= 1.11): archives of files the storage cannot read are "
                 "served by Orthanc's own job, which skips them")
    manager = None
    if storage.sides is not None:  # hybrid mode: move jobs
        manager = JobManager(RestIndex(api), storage.sides, FileJobStore(jobs_folder(plugin_config.common)),
                             workers=MOVE_WORKERS, on_step=metrics.move_step)
        manager.load()  # persisted jobs answer over REST at once; their workers start with Orthanc
        lifecycle.on_started.append(manager.start)
        lifecycle.on_stopped.append(manager.stop)
        tiering = plugin_config.common.tiering
        if tiering is not None and tiering.enabled:  # automatic moves by age (tiering.py)
            state = os.path.join(jobs_folder(plugin_config.common), "tiering.jsonl")
            policy = TieringPolicy(api, manager, tiering, state)
            lifecycle.on_started.append(policy.start)
            lifecycle.on_stopped.insert(0, policy.stop)
    in_process = isinstance(api, InProcessApi)
    core_jobs = CoreJobs(api, (lambda: json.loads(orthanc.RestApiGet("/jobs"))) if in_process else None,
                         {orthanc.ChangeType.JOB_SUBMITTED, orthanc.ChangeType.JOB_SUCCESS,
                          orthanc.ChangeType.JOB_FAILURE})
    lifecycle.on_change.append(core_jobs.on_change)
    # restore jobs (S3 and Azure: the stores with cold classes) are listed under /jobs as move jobs are
    restores = RestoreManager(RestIndex(api), area,
                              FileJobStore(os.path.join(jobs_folder(common), RESTORE_JOBS_FOLDER)),
                              on_step=metrics.restore_step)
    restores.load()
    lifecycle.on_started.append(restores.start)
    lifecycle.on_stopped.append(restores.stop)
    for pattern, callback in RestoreRoutes(api, area, restores, policy, metrics.restore_step).routes():
        orthanc.RegisterRestCallback(pattern, callback)
    adopt_jobs = register_adoption(storage.adoption, api, lifecycle, common, metrics.adopt_step)
    listed = ((restores,) if area.restore_tiers else ()) + ((adopt_jobs,) if adopt_jobs is not None else ())
    for pattern, callback in MoveStorageRoutes(api, area, manager, plugin_config.common.hybrid_mode,
                                               core_jobs, other_jobs=listed).routes():
        orthanc.RegisterRestCallback(pattern, callback)
    log.warning("orthanc-objstore %s: storage area in %r through %s; Orthanc's REST API %s; metrics %s; %s; "
                "started in %.3f s", __version__, area, registered, how, metrics_where, viewer,
                time.monotonic() - started)
    return callbacks
