"""The MoveStorage job: moves attachments between the two sides of a hybrid area, durably.

Orthanc-free: it talks to Orthanc's index through ``OrthancIndex`` and keeps its state in a
``JobStore``, so the whole machine runs in unit tests on memory stores and fakes.

A job is a small serialisable step machine:

1. **Planning**: the resources given (patients, studies, series, instances) are expanded into the
   attachments of each resource *and of every resource below it* (SPEC MOVE-5), with the size and
   MD5 Orthanc's index records for each. The plan is saved before anything moves.
2. **Moving**: each planned attachment is one step (``move_attachment``): read from the source,
   check size and MD5 against the index, write to the target, and only then delete the source. A
   file on the target only is skipped; on both sides (a move interrupted between write and delete)
   the verified source copy replaces the target copy and is then deleted; on neither side it is
   reported as missing. Steps run in a bounded thread pool (SPEC MOVE-6).
3. Every finished step is appended to the job's journal at once. After a crash, the job reloads
   its plan and journal and runs the steps not in the journal again; since a step never deletes
   the source before the target holds a verified copy, and re-running a finished step finds the
   file on the target only, nothing is lost and nothing is moved twice (SPEC MOVE-3, MOVE-4).

Job states and their JSON follow Orthanc's core jobs (``GET /jobs/{id}``).
"""

import concurrent.futures
import datetime
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid as uuidlib
from dataclasses import asdict, dataclass
from typing import Protocol

from .errors import IntegrityError, NotFound, StoreError

log = logging.getLogger(__name__)

JOB_TYPE = "MoveStorage"
PENDING, RUNNING, SUCCESS, FAILURE = "Pending", "Running", "Success", "Failure"
FINISHED_STATES = (SUCCESS, FAILURE)
ERROR_STORAGE = (32, "Error in the plugin implementing a custom storage area")
ERROR_CANCELED = (37, "This job was canceled")
JOB_ID_PREFIX = "objstore-"

# Resource levels: (level, plural group name in the job content, REST folder, child level)
LEVELS = {
    "Patient": ("Patients", "patients", "Study"),
    "Study": ("Studies", "studies", "Series"),
    "Series": ("Series", "series", "Instance"),
    "Instance": ("Instances", "instances", None),
}
LEVEL_BY_FOLDER = {folder: level for level, (_, folder, _) in LEVELS.items()}
RESOLUTION_ORDER = ("Instance", "Series", "Study", "Patient")  # as the official plugin
MOVED, SKIPPED, MISSING, FAILED = "moved", "skipped", "missing", "failed"
MAX_REPORTED_ERRORS = 100


@dataclass(frozen=True)
class Attachment:
    """One attachment as Orthanc's index records it (size and MD5 of the bytes in the storage)."""

    resource: str  # "instances/<id>", "studies/<id>"...
    uuid: str
    content_type: int
    size: int
    md5: str  # hex; "" when Orthanc does not store MD5s (StoreMD5ForAttachments false)


class OrthancIndex(Protocol):
    """What the job needs from Orthanc's index (the glue implements it with RestApiGet)."""

    def level_of(self, resource_id: str) -> str | None:
        """``Patient``, ``Study``, ``Series``, ``Instance``, or None for an unknown id."""

    def children(self, level: str, resource_id: str) -> list[str]:
        """The ids one level below (studies of a patient...); [] for an instance or a deleted resource."""

    def attachments(self, level: str, resource_id: str) -> list[Attachment]:
        """The attachments of the resource itself; [] when it was deleted."""


class JobStore(Protocol):
    """Durable job state: a document per job (replaced atomically) and an append-only journal."""

    def save(self, job_id: str, document: dict) -> None: ...

    def append(self, job_id: str, record: dict) -> None: ...

    def load_all(self) -> list[tuple[dict, list[dict]]]: ...

    def delete(self, job_id: str) -> None: ...


class FileJobStore:
    """Job state in a folder: ``<id>.json`` written atomically, ``<id>.journal`` one JSON line per step."""

    def __init__(self, folder: str):
        self.folder = folder
        self._lock = threading.Lock()
        self._journals = {}

    def _path(self, job_id, extension):
        if not job_id.startswith(JOB_ID_PREFIX) or "/" in job_id or ".." in job_id:
            raise ValueError(f"invalid job id {job_id!r}")
        return os.path.join(self.folder, job_id + extension)

    def save(self, job_id: str, document: dict) -> None:
        os.makedirs(self.folder, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(document, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self._path(job_id, ".json"))
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise

    def append(self, job_id: str, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            journal = self._journals.get(job_id)
            if journal is None:
                os.makedirs(self.folder, exist_ok=True)
                journal = self._journals[job_id] = open(self._path(job_id, ".journal"), "a")
            journal.write(line)
            journal.flush()  # in the OS's hands: survives Orthanc being killed

    def close(self, job_id: str) -> None:
        with self._lock:
            journal = self._journals.pop(job_id, None)
        if journal is not None:
            journal.close()

    def load_all(self) -> list[tuple[dict, list[dict]]]:
        if not os.path.isdir(self.folder):
            return []
        loaded = []
        for name in sorted(os.listdir(self.folder)):
            if not (name.startswith(JOB_ID_PREFIX) and name.endswith(".json")):
                continue
            try:
                with open(os.path.join(self.folder, name)) as file:
                    document = json.load(file)
            except (OSError, ValueError) as exc:
                log.error("move job file %s is unreadable and ignored: %s", name, exc)
                continue
            records = []
            try:
                with open(self._path(document["ID"], ".journal")) as file:
                    for line in file:
                        try:
                            records.append(json.loads(line))
                        except ValueError:
                            break  # a line cut by a crash: the steps after it run again
            except FileNotFoundError:
                pass
            loaded.append((document, records))
        return loaded

    def delete(self, job_id: str) -> None:
        self.close(job_id)
        for extension in (".json", ".journal"):
            try:
                os.remove(self._path(job_id, extension))
            except FileNotFoundError:
                pass


# ----------------------------------------------------------------------------------------------
# The request


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
    if target not in ("file-system", "object-storage"):
        raise BadRequest(f'"TargetStorage" must be "file-system" or "object-storage", not {json.dumps(target)}')
    for field in ("Asynchronous", "Synchronous"):
        if field in request and not isinstance(request[field], bool):
            raise BadRequest(f'"{field}" must be true or false, not {json.dumps(request[field])}')
    priority = request.get("Priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise BadRequest(f'"Priority" must be an integer, not {json.dumps(priority)}')
    if "Asynchronous" in request:
        asynchronous = request["Asynchronous"]
    else:
        asynchronous = not request.get("Synchronous", True)
    return MoveRequest(list(dict.fromkeys(resources)), target, asynchronous, priority)


# ----------------------------------------------------------------------------------------------
# Planning and one step


def plugin_content_type(index_content_type: int) -> int:
    """The content type Orthanc hands the storage callbacks for an attachment type of its index.

    Orthanc (RegisterStorageArea) passes DICOM (1), DICOM-as-JSON (2) and DICOM-until-pixel-data (3) as
    they are and every other type, user-defined ones included, as 0 (unknown).
    """
    return index_content_type if index_content_type in (1, 2, 3) else 0


def resolve(index: OrthancIndex, resource_ids) -> dict[str, list[str]]:
    """Groups ids by level as the official job content does; raises ``LookupError`` naming unknown ids."""
    groups: dict[str, list[str]] = {}
    unknown = []
    for resource_id in resource_ids:
        level = index.level_of(resource_id) if resource_id else None
        if level is None:
            unknown.append(resource_id)
        else:
            groups.setdefault(LEVELS[level][0], []).append(resource_id)
    if unknown:
        raise LookupError(unknown)
    return groups


def plan(index: OrthancIndex, groups: dict[str, list[str]]) -> list[Attachment]:
    """Every attachment of the resources and of all resources below them, each uuid once."""
    planned, seen = [], set()
    group_levels = {group: level for level, (group, _, _) in LEVELS.items()}
    stack = [(group_levels[group], resource_id) for group, ids in groups.items() for resource_id in ids]
    stack.reverse()
    while stack:
        level, resource_id = stack.pop()
        for attachment in index.attachments(level, resource_id):
            if attachment.uuid not in seen:
                seen.add(attachment.uuid)
                planned.append(attachment)
        child_level = LEVELS[level][2]
        if child_level:
            stack.extend((child_level, child) for child in reversed(index.children(level, resource_id)))
    return planned


def _matches(data: bytes, attachment: Attachment) -> str | None:
    """None when ``data`` is what the index records, else what differs."""
    if len(data) != attachment.size:
        return f"size {len(data)} differs from the {attachment.size} bytes in Orthanc's index"
    if attachment.md5 and hashlib.md5(data).hexdigest() != attachment.md5.lower():
        return "MD5 differs from the one in Orthanc's index"
    return None


def move_attachment(attachment: Attachment, source, target) -> str:
    """Moves one attachment from area ``source`` to area ``target``; returns MOVED, SKIPPED or MISSING.

    The bytes read from the source must match the size and MD5 of Orthanc's index before they are
    written; the write replaces any copy an interrupted move left on the target; the source is
    deleted only after the write succeeded (a store's ``put`` stores exactly the bytes given, which S3
    checks with Content-MD5). Raises ``StoreError`` (``IntegrityError`` for a source that does not
    match the index) on failure; the source copy is then always still in place.
    """
    uuid, content_type = attachment.uuid, attachment.content_type
    try:
        data = source.read(uuid, content_type)
    except NotFound:
        return SKIPPED if target.locate(uuid, content_type) else MISSING
    problem = _matches(data, attachment)
    if problem:
        raise IntegrityError(f"the source copy is damaged ({problem}); left where it is", uuid)
    target.create(uuid, content_type, data)
    source.remove(uuid, content_type)
    return MOVED


# ----------------------------------------------------------------------------------------------
# Jobs


def _timestamp(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%S.%f")


class MoveJob:
    """One move job: its request, plan, per-step outcomes and state. Thread-safe."""

    def __init__(self, job_id, target, groups, priority=0, created=None):
        self.id = job_id
        self.target = target
        self.groups = groups
        self.priority = priority
        self.created = created if created is not None else time.time()
        self.state = PENDING
        self.error = (0, "Success")
        self.plan: list[Attachment] | None = None
        self.done: dict[int, tuple[str, int]] = {}  # step -> (outcome, bytes)
        self.errors: list[dict] = []
        self.started = None
        self.completed = None
        self.cancel_requested = False
        self.finished = threading.Event()
        self.lock = threading.Lock()

    # -- persistence

    def document(self) -> dict:
        with self.lock:
            return {"ID": self.id, "Type": JOB_TYPE, "TargetStorage": self.target, "Resources": self.groups,
                    "Priority": self.priority, "Created": self.created, "State": self.state,
                    "Error": list(self.error), "Completed": self.completed,
                    "Plan": None if self.plan is None else [list(asdict(a).values()) for a in self.plan]}

    @classmethod
    def from_document(cls, document: dict, journal: list[dict]) -> "MoveJob":
        job = cls(document["ID"], document["TargetStorage"], document["Resources"], document.get("Priority", 0),
                  document["Created"])
        job.state = document["State"]
        job.error = tuple(document.get("Error") or (0, "Success"))
        job.completed = document.get("Completed")
        if document.get("Plan") is not None:
            job.plan = [Attachment(*fields) for fields in document["Plan"]]
        for record in journal:
            job.done[record["i"]] = (record["o"], record["b"])
            if record.get("e") and len(job.errors) < MAX_REPORTED_ERRORS:
                job.errors.append(record["e"])
        if job.state in FINISHED_STATES:
            job.finished.set()
        else:
            job.state = PENDING  # was running when Orthanc stopped: runs again from its journal
        return job

    # -- what REST shows

    def counts(self) -> dict:
        with self.lock:
            totals = {kind: [0, 0] for kind in (MOVED, SKIPPED, MISSING, FAILED)}
            for outcome, size in self.done.values():
                totals[outcome][0] += 1
                totals[outcome][1] += size
            planned = self.plan or []
            return {"TotalFiles": len(planned), "TotalBytes": sum(a.size for a in planned),
                    "MovedFiles": totals[MOVED][0], "MovedBytes": totals[MOVED][1],
                    "SkippedFiles": totals[SKIPPED][0], "SkippedBytes": totals[SKIPPED][1],
                    "FailedFiles": totals[FAILED][0], "FailedBytes": totals[FAILED][1],
                    "MissingFiles": totals[MISSING][0], "Errors": list(self.errors)}

    def content(self) -> dict:
        content = dict(self.groups)  # the official job's content: the resource groups...
        content["TargetStorage"] = self.target
        content.update(self.counts())  # ...and the counts of this one
        return content

    def progress(self) -> int:
        with self.lock:
            if self.state == SUCCESS:
                return 100
            if not self.plan:
                return 0
            return int(100 * len(self.done) / len(self.plan))

    def status(self) -> dict:
        now = time.time()
        with self.lock:
            state, error, created, started, completed = (self.state, self.error, self.created, self.started,
                                                         self.completed)
        runtime = ((completed or now) - started) if started else 0.0
        status = {"ID": self.id, "Type": JOB_TYPE, "State": state, "Progress": self.progress(),
                  "Priority": self.priority, "CreationTime": _timestamp(created),
                  "EffectiveRuntime": round(runtime, 3), "ErrorCode": error[0], "ErrorDescription": error[1],
                  "Timestamp": _timestamp(now), "Content": self.content()}
        if completed:
            status["CompletionTime"] = _timestamp(completed)
        return status


class JobManager:
    """Runs move jobs one after the other (highest priority first), each with a bounded thread pool.

    ``areas(name)`` gives the area of a storage (``file-system``/``object-storage``); ``start()``
    reloads persisted jobs and resumes unfinished ones; ``stop()`` lets the steps in flight end and
    leaves the rest for the next start.
    """

    def __init__(self, index: OrthancIndex, areas, job_store: JobStore, workers: int = 8,
                 keep_finished: int = 100):
        self.index = index
        self.areas = areas
        self.job_store = job_store
        self.workers = workers
        self.keep_finished = keep_finished
        self._jobs: dict[str, MoveJob] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = None
        self._loaded = False

    # -- REST side

    def submit(self, groups: dict[str, list[str]], target: str, priority: int = 0) -> MoveJob:
        job = MoveJob(JOB_ID_PREFIX + str(uuidlib.uuid4()), target, groups, priority)
        self.job_store.save(job.id, job.document())
        with self._wake:
            self._jobs[job.id] = job
            self._wake.notify_all()
        log.info("move job %s created: %s to %s", job.id, _summary(groups), target)
        return job

    def get(self, job_id: str) -> MoveJob | None:
        with self._wake:
            return self._jobs.get(job_id)

    def jobs(self) -> list[MoveJob]:
        with self._wake:
            return sorted(self._jobs.values(), key=lambda job: job.created)

    def cancel(self, job_id: str) -> bool:
        """Cancels a pending or running job; False when it does not exist or has already finished."""
        job = self.get(job_id)
        if job is None:
            return False
        with job.lock:
            if job.state in FINISHED_STATES:
                return False
            job.cancel_requested = True
            pending = job.state == PENDING
        if pending:
            self._finish(job, FAILURE, ERROR_CANCELED)
        return True

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- lifecycle

    def load(self) -> None:
        """Reloads the persisted jobs, so that they answer over REST as soon as Orthanc does (before
        Orthanc says it has started); unfinished ones resume when ``start()`` runs. Idempotent."""
        if self._loaded:
            return
        self._loaded = True
        for document, journal in self.job_store.load_all():
            try:
                job = MoveJob.from_document(document, journal)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("move job %s cannot be reloaded and is ignored: %s", document.get("ID"), exc)
                continue
            with self._wake:
                if job.id in self._jobs:  # submitted before Orthanc said it had started
                    continue
                self._jobs[job.id] = job
            if job.state == PENDING:
                log.warning("move job %s resumes (%d of %s files already done)", job.id, len(job.done),
                            len(job.plan) if job.plan is not None else "?")
        self._prune()

    def start(self) -> None:
        self.load()
        with self._wake:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="objstore-move", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- worker

    def _next(self) -> MoveJob | None:
        pending = [job for job in self._jobs.values() if job.state == PENDING]
        return min(pending, key=lambda job: (-job.priority, job.created)) if pending else None

    def _run(self):
        while True:
            with self._wake:
                while not self._stopping and self._next() is None:
                    self._wake.wait()
                if self._stopping:
                    return
                job = self._next()
            try:
                self._run_job(job)
            except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not kill the worker
                log.exception("move job %s failed", job.id)
                self._finish(job, FAILURE, (ERROR_STORAGE[0], f"internal error: {type(exc).__name__}: {exc}"))

    def _run_job(self, job: MoveJob):
        with job.lock:
            if job.state != PENDING:
                return
            job.state = RUNNING
            job.started = time.time()
        self.job_store.save(job.id, job.document())
        if job.plan is None:
            started = time.monotonic()
            planned = plan(self.index, job.groups)
            with job.lock:
                job.plan = planned
            self.job_store.save(job.id, job.document())
            log.info("move job %s: %d file(s) to move, planned in %.1f s", job.id, len(planned),
                     time.monotonic() - started)
        source = self.areas(_other(job.target))
        target = self.areas(job.target)
        todo = [step for step in range(len(job.plan)) if step not in job.done]
        in_flight = threading.BoundedSemaphore(self.workers * 2)
        with concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="objstore-move") as pool:
            for step in todo:
                if job.cancel_requested or self._stopping:
                    break
                in_flight.acquire()
                future = pool.submit(self._step, job, step, source, target)
                future.add_done_callback(lambda _: in_flight.release())
        if self._stopping and not job.cancel_requested:
            with job.lock:
                job.state = PENDING  # resumed at the next start
            log.warning("move job %s interrupted by Orthanc stopping; it resumes at the next start", job.id)
            return
        if job.cancel_requested:
            self._finish(job, FAILURE, ERROR_CANCELED)
            return
        counts = job.counts()
        if counts["FailedFiles"]:
            description = (f"{counts['FailedFiles']} of {counts['TotalFiles']} file(s) could not be moved "
                           f"(first: {job.errors[0]['Error'] if job.errors else '?'}); they are still on "
                           f"the {_other(job.target)} side; post the same request again to retry them")
            self._finish(job, FAILURE, (ERROR_STORAGE[0], description))
        else:
            self._finish(job, SUCCESS, (0, "Success"))

    def _step(self, job: MoveJob, step: int, source, target):
        attachment = job.plan[step]
        error = None
        try:
            outcome = move_attachment(attachment, source, target)
        except Exception as exc:  # noqa: BLE001 - one file's failure is reported, the others go on
            outcome = FAILED
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, StoreError) else str(exc)
            log.warning("move job %s: attachment %s of %s not moved: %s", job.id, attachment.uuid,
                        attachment.resource, error)
        if outcome == MISSING:
            error = "on neither storage"
            log.warning("move job %s: attachment %s of %s is on neither storage", job.id, attachment.uuid,
                        attachment.resource)
        record = {"i": step, "o": outcome, "b": 0 if outcome == MISSING else attachment.size}
        if error:
            record["e"] = {"Uuid": attachment.uuid, "Resource": attachment.resource, "Error": error}
        self.job_store.append(job.id, record)
        with job.lock:
            job.done[step] = (outcome, record["b"])
            if error and len(job.errors) < MAX_REPORTED_ERRORS:
                job.errors.append(record["e"])

    def _finish(self, job: MoveJob, state: str, error: tuple[int, str]):
        with job.lock:
            if job.state in FINISHED_STATES:
                return
            job.state = state
            job.error = tuple(error)
            job.completed = time.time()
        self.job_store.save(job.id, job.document())
        if hasattr(self.job_store, "close"):
            self.job_store.close(job.id)
        job.finished.set()
        counts = job.counts()
        log.info("move job %s: %s (%d moved, %d skipped, %d failed, %d missing)", job.id, state,
                 counts["MovedFiles"], counts["SkippedFiles"], counts["FailedFiles"], counts["MissingFiles"])
        self._prune()

    def _prune(self):
        """Forgets the oldest finished jobs beyond ``keep_finished``."""
        with self._wake:
            finished = sorted((job for job in self._jobs.values() if job.state in FINISHED_STATES),
                              key=lambda job: job.created)
            forgotten = finished[:max(0, len(finished) - self.keep_finished)]
            for job in forgotten:
                del self._jobs[job.id]
        for job in forgotten:
            self.job_store.delete(job.id)


def _other(storage: str) -> str:
    return "file-system" if storage == "object-storage" else "object-storage"


def _summary(groups):
    return ", ".join(f"{len(ids)} {group.lower()}" for group, ids in groups.items())


# ----------------------------------------------------------------------------------------------
# Where is my file


def storage_locations(index: OrthancIndex, area, level: str, resource_id: str) -> list[dict]:
    """Every attachment of a resource and of the resources below it, with where it is now (SPEC BEY-1)."""
    answer = []
    for attachment in plan(index, {LEVELS[level][0]: [resource_id]}):
        locations = area.locate(attachment.uuid, attachment.content_type)
        storages = sorted({location.storage for location in locations})
        answer.append({"Resource": attachment.resource, "Uuid": attachment.uuid,
                       "ContentType": attachment.content_type, "Size": attachment.size,
                       "Storage": "both" if len(storages) > 1 else (storages[0] if storages else "missing"),
                       "Locations": [{"Storage": location.storage, "Key": location.key,
                                      "Where": location.description} for location in locations]})
    return answer
