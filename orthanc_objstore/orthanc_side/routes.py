"""The move-storage routes: ``POST /move-storage``, move jobs under ``/jobs``, ``GET /{level}/{id}/storage-location``.

Every request and answer format of these routes lives here: the ``/move-storage`` body
(``parse_request``, SPEC MOVE-1/MOVE-2), the jobs' JSON (``job_status``, as Orthanc's core jobs), and
"where is my file" (``storage_locations``, SPEC BEY-1). Orthanc-free: the handlers talk to Orthanc
through the port (``index.OrthancApi``) and get the core's job ids from ``core_jobs``.
"""

import datetime
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..areas.contract import STORAGE_NAMES, Area
from ..errors import StoreError
from ..jobs.scheduler import JobManager
from ..jobs.steps import JOB_ID_PREFIX, JOB_TYPE, SUCCESS, plan, resolve
from ..port.index import LEVEL_BY_FOLDER, LEVELS, OrthancApi, OrthancIndex, RestIndex, valid_resource_id
from .rest import Request, answer_json, route, send_json_error


class BadRequest(ValueError):
    """A ``/move-storage`` request that cannot be accepted; the message says what is wrong."""


@dataclass(frozen=True)
class MoveRequest:
    resources: list
    target: str
    asynchronous: bool
    priority: int


_REQUEST_FIELDS = ("Resources", "TargetStorage", "Asynchronous", "Synchronous", "Priority")


def parse_request(body: bytes) -> MoveRequest:
    """Checks a ``POST /move-storage`` body (SPEC MOVE-1, MOVE-2); raises ``BadRequest`` naming the problem."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON; expected an object such as "
                         '{"Resources": ["<id>"], "TargetStorage": "object-storage"}') from None
    if not isinstance(request, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(request).__name__}")
    unknown = sorted(set(request) - set(_REQUEST_FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_REQUEST_FIELDS)}")
    resources = request.get("Resources")
    if not isinstance(resources, list) or not resources:
        raise BadRequest('"Resources" must be a non-empty array of patient, study, series or instance ids')
    bad = [value for value in resources if not isinstance(value, str) or not value]
    if bad:
        raise BadRequest(f'"Resources" must only hold non-empty strings (ids); got {json.dumps(bad[:5])}')
    target = request.get("TargetStorage")
    if target not in STORAGE_NAMES:
        raise BadRequest(f'"TargetStorage" must be {" or ".join(json.dumps(name) for name in STORAGE_NAMES)}, '
                         f'not {json.dumps(target)}')
    for name in ("Asynchronous", "Synchronous"):
        if name in request and not isinstance(request[name], bool):
            raise BadRequest(f'"{name}" must be true or false, not {json.dumps(request[name])}')
    priority = request.get("Priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise BadRequest(f'"Priority" must be an integer, not {json.dumps(priority)}')
    if "Asynchronous" in request:
        asynchronous = request["Asynchronous"]
    else:
        asynchronous = not request.get("Synchronous", True)
    return MoveRequest(list(dict.fromkeys(resources)), target, asynchronous, priority)


def _timestamp(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y%m%dT%H%M%S.%f")


def job_status(job) -> dict:
    """A job of the plugin (a ``MoveJob``, or any job with the same fields and its own ``job_type``, such as
    a ``RestoreJob``) as ``GET /jobs/{id}`` shows it: the fields of Orthanc's core jobs."""
    now = time.time()
    with job.lock:
        state, error, created, started, completed = job.state, job.error, job.created, job.started, job.completed
    runtime = ((completed or now) - started) if started else 0.0
    status = {"ID": job.id, "Type": getattr(job, "job_type", JOB_TYPE), "State": state, "Progress": job.progress(),
              "Priority": job.priority, "CreationTime": _timestamp(created),
              "EffectiveRuntime": round(runtime, 3), "ErrorCode": error[0], "ErrorDescription": error[1],
              "Timestamp": _timestamp(now), "Content": job.content()}
    if completed:
        status["CompletionTime"] = _timestamp(completed)
    return status


class CoreJobs:
    """The ids of Orthanc's own jobs, for ``GET /jobs`` (which this plugin answers, to list its move jobs too).

    ``in_process`` lists them through the SDK; it is given only where that call is safe. Otherwise (over
    HTTP, ``GET /jobs`` would reach this plugin's own route, and the in-process call waits, GIL held, on
    a lock that Orthanc < 1.12.2 shares between all plugins) the ids come from Orthanc's job events
    (``on_change``, queued by the Python plugin: no lock) and are checked over the port; a job Orthanc
    reloaded at start-up is listed once an event names it.
    """

    def __init__(self, api: OrthancApi, in_process: Callable[[], list[str]] | None, job_events: set, keep: int = 1000):
        self.api = api
        self.in_process = in_process
        self.job_events = job_events
        self.keep = keep
        self._seen: dict[str, None] = {}
        self._lock = threading.Lock()

    def on_change(self, change_type, resource) -> None:
        if change_type in self.job_events and resource:
            with self._lock:
                self._seen[resource] = None
                while len(self._seen) > self.keep:
                    self._seen.pop(next(iter(self._seen)))

    def __call__(self) -> list[str]:
        if self.in_process is not None:
            return list(self.in_process())
        with self._lock:
            candidates = list(self._seen)
        present = [job for job in candidates if self.api.get_json(f"/jobs/{job}") is not None]
        with self._lock:
            for job in set(candidates) - set(present):
                self._seen.pop(job, None)  # removed from Orthanc's job history
        return present


class MoveStorageRoutes:
    """The handlers; ``routes()`` gives the (pattern, callback) pairs to register. ``manager`` is None
    when hybrid mode is off (then /move-storage answers 400). ``other_jobs`` are the plugin's other job
    managers (restore jobs): each has ``get(id)``, ``jobs()`` and ``cancel(id)`` as ``JobManager`` does, and
    their jobs are listed, shown and cancelled under ``/jobs`` with the move jobs."""

    def __init__(self, api: OrthancApi, area: Area, manager: JobManager | None, hybrid_mode: str,
                 core_jobs: Callable[[], list[str]], other_jobs: tuple = ()):
        self.api = api
        self.area = area
        self.manager = manager
        self.job_managers = tuple(m for m in (manager, *other_jobs) if m is not None)
        self.hybrid_mode = hybrid_mode
        self.core_jobs = core_jobs
        self.index = RestIndex(api)

    def routes(self) -> list[tuple[str, Callable[..., None]]]:
        pairs = [("/move-storage", route(self.move_storage, "POST")),
                 ("/(patients|studies|series|instances)/([^/]+)/storage-location",
                  route(self.storage_location, "GET"))]
        if self.job_managers:
            job_id = f"({JOB_ID_PREFIX}[0-9a-f-]+)"
            pairs += [("/jobs", route(self.list_jobs, "GET")),
                      (f"/jobs/{job_id}", route(self.job, "GET")),
                      (f"/jobs/{job_id}/cancel", route(self.cancel_job, "POST"))]
        return pairs

    def move_storage(self, output, request: Request):
        if self.manager is None:
            send_json_error(output, 400, "POST /move-storage only works in hybrid mode; this Orthanc runs with "
                            f"HybridMode {self.hybrid_mode!r}: set HybridMode to \"WriteToFileSystem\" or "
                            "\"WriteToObjectStorage\" to use it")
            return
        try:
            parsed = parse_request(request.body)
        except BadRequest as exc:
            send_json_error(output, 400, str(exc))
            return
        with self.api.handler_slot():
            try:
                groups = resolve(self.index, parsed.resources)
            except LookupError as exc:
                unknown = exc.args[0]
                send_json_error(output, 404, f"unknown resource(s): {', '.join(map(repr, unknown))}; expected ids "
                                "of patients, studies, series or instances in this Orthanc", UnknownResources=unknown)
                return
            job = self.manager.submit(groups, parsed.target, parsed.priority)
            if parsed.asynchronous:
                answer_json(output, {"ID": job.id, "Path": f"/jobs/{job.id}"})
                return
            while not job.finished.wait(0.5):  # waiting releases the GIL; the job runs in its own threads
                if self.manager.stopping:
                    send_json_error(output, 503, "Orthanc is stopping; the move job resumes at the next start",
                                    ID=job.id, Path=f"/jobs/{job.id}")
                    return
        status = job_status(job)
        if status["State"] == SUCCESS:
            answer_json(output, status["Content"])
        else:
            send_json_error(output, 500, status["ErrorDescription"], ErrorCode=status["ErrorCode"], ID=job.id,
                            Content=status["Content"])

    def _own_jobs(self) -> list:
        return sorted((job for manager in self.job_managers for job in manager.jobs()), key=lambda job: job.created)

    def _find(self, job_id: str):
        for manager in self.job_managers:
            job = manager.get(job_id)
            if job is not None:
                return manager, job
        return None, None

    def list_jobs(self, output, request: Request):
        with self.api.handler_slot():
            core = self.core_jobs()
            if "expand" not in request.get:
                answer_json(output, core + [job.id for job in self._own_jobs()])
                return
            expanded = []
            for job_id in core:
                status = self.api.get_json(f"/jobs/{job_id}")
                if status is not None:  # else removed from the history meanwhile
                    expanded.append(status)
        answer_json(output, expanded + [job_status(job) for job in self._own_jobs()])

    def job(self, output, request: Request):
        _, job = self._find(request.groups[0])
        if job is None:
            send_json_error(output, 404, f"no job {request.groups[0]!r}")
        else:
            answer_json(output, job_status(job))

    def cancel_job(self, output, request: Request):
        job_id = request.groups[0]
        manager, job = self._find(job_id)
        if job is None:
            send_json_error(output, 404, f"no job {job_id!r}")
        elif not manager.cancel(job_id):
            send_json_error(output, 400, f"job {job_id} has already finished ({job.state})")
        else:
            answer_json(output, {})

    def storage_location(self, output, request: Request):
        folder, resource_id = request.groups
        level = LEVEL_BY_FOLDER[folder].name
        with self.api.handler_slot():
            if not valid_resource_id(resource_id) or not self.index.exists(level, resource_id):
                send_json_error(output, 404, f"unknown {level.lower()} {resource_id!r}")
                return
            locations = storage_locations(self.index, self.area, level, resource_id)
        answer_json(output, {"ID": resource_id, "Type": level, "Attachments": locations})


def _cold_fields(area: Area, attachment, locations) -> dict:
    """``StorageClass`` and ``Restore`` of the copy a read gets, when a storage of the area has cold classes."""
    if not locations or not area.restore_tiers:
        return {}
    try:
        state = area.cold_state(attachment.uuid, attachment.content_type)
    except StoreError as exc:
        return {"StorageClass": None, "Restore": f"unknown ({exc})"}
    fields = {"StorageClass": state.storage_class or None, "Restore": state.restore}
    if state.expiry:
        fields["RestoreExpiry"] = state.expiry
    return fields


def storage_locations(index: OrthancIndex, area: Area, level: str, resource_id: str) -> list[dict]:
    """Every attachment of a resource and of the resources below it, with where it is now (SPEC BEY-1), and
    its storage class and restore state where the storage has cold classes (SPEC COLD-1)."""
    answer = []
    for attachment in plan(index, {LEVELS[level].group: [resource_id]}):
        locations = area.locate(attachment.uuid, attachment.content_type)
        storages = sorted({location.storage for location in locations})
        answer.append({"Resource": attachment.resource, "Uuid": attachment.uuid,
                       "ContentType": attachment.content_type, "Size": attachment.size,
                       "Storage": "both" if len(storages) > 1 else (storages[0] if storages else "missing"),
                       "Locations": [{"Storage": location.storage, "Key": location.key,
                                      "Where": location.description} for location in locations],
                       **_cold_fields(area, attachment, locations)})
    return answer
