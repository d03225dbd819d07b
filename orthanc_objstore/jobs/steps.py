"""The MoveStorage step machine: plan, one step, and a job's durable state (the scheduler is ``scheduler``).

Orthanc-free: it reads Orthanc's index through ``index.OrthancIndex`` and moves between two areas.

1. **Planning**: the resources given (patients, studies, series, instances) are expanded into the
   attachments of each resource *and of every resource below it* (SPEC MOVE-5), with the size and
   MD5 Orthanc's index records for each. The plan is saved before anything moves.
2. **Moving**: each planned attachment is one step (``move_attachment``): read from the source,
   check size and MD5 against the index, write to the target, and only then delete the source. A
   file on the target only is skipped; on both sides (a move interrupted between write and delete)
   the verified source copy replaces the target copy and is then deleted; on neither side it is
   reported as missing.
3. Every finished step is one journal record (``MoveJob.record``, read back by ``MoveJob.apply``).
   After a crash, the job reloads its plan and journal and runs the steps not in the journal again;
   since a step never deletes the source before the target holds a verified copy, and re-running a
   finished step finds the file on the target only, nothing is lost and nothing is moved twice
   (SPEC MOVE-3, MOVE-4).

States: ``Pending`` (waiting, or interrupted by Orthanc stopping: resumes at the next start) ->
``Running`` -> ``Success`` or ``Failure`` (some files failed, or cancelled: error code 37). A
cancel stops a job between steps; steps in flight finish first.
"""

import hashlib
import threading
import time
from dataclasses import asdict
from typing import Protocol

from ..areas.contract import FILE_SYSTEM, OBJECT_STORAGE
from ..errors import IntegrityError, NotFound
from ..port.index import LEVEL_BY_GROUP, LEVELS, Attachment, OrthancIndex

__all__ = ["MoveJob", "move_attachment", "plan", "resolve"]

JOB_TYPE = "MoveStorage"
PENDING, RUNNING, SUCCESS, FAILURE = "Pending", "Running", "Success", "Failure"
FINISHED_STATES = (SUCCESS, FAILURE)
ERROR_STORAGE = (32, "Error in the plugin implementing a custom storage area")
ERROR_CANCELED = (37, "This job was canceled")
JOB_ID_PREFIX = "objstore-"
MOVED, SKIPPED, MISSING, FAILED = "moved", "skipped", "missing", "failed"
OUTCOMES = {MOVED: True, SKIPPED: True, FAILED: True, MISSING: False}  # a step's outcome: whether it has bytes
MAX_REPORTED_ERRORS = 100


def other_storage(storage: str) -> str:
    return FILE_SYSTEM if storage == OBJECT_STORAGE else OBJECT_STORAGE


def resolve(index: OrthancIndex, resource_ids) -> dict[str, list[str]]:
    """Groups ids by level as the official job content does; raises ``LookupError`` naming unknown ids."""
    groups: dict[str, list[str]] = {}
    unknown = []
    for resource_id in resource_ids:
        level = index.level_of(resource_id) if resource_id else None
        if level is None:
            unknown.append(resource_id)
        else:
            groups.setdefault(LEVELS[level].group, []).append(resource_id)
    if unknown:
        raise LookupError(unknown)
    return groups


def plan(index: OrthancIndex, groups: dict[str, list[str]]) -> list[Attachment]:
    """Every attachment of the resources and of all resources below them, each uuid once."""
    planned, seen = [], set()
    stack = [(LEVEL_BY_GROUP[group].name, resource_id) for group, ids in groups.items() for resource_id in ids]
    stack.reverse()
    while stack:
        level, resource_id = stack.pop()
        for attachment in index.attachments(level, resource_id):
            if attachment.uuid not in seen:
                seen.add(attachment.uuid)
                planned.append(attachment)
        child_level = LEVELS[level].child
        if child_level:
            stack.extend((child_level, child) for child in reversed(index.children(level, resource_id)))
    return planned


def matches_index(data: bytes, attachment: Attachment) -> str | None:
    """None when ``data`` is what the index records, else what differs."""
    if len(data) != attachment.size:
        return f"size {len(data)} differs from the {attachment.size} bytes in Orthanc's index"
    if attachment.md5 and hashlib.md5(data).hexdigest() != attachment.md5.lower():
        return "MD5 differs from the one in Orthanc's index"
    return None


class MoveSource(Protocol):
    """What a step needs of its source (an ``Area`` is one)."""

    def read(self, uuid: str, content_type: int) -> bytes: ...

    def remove(self, uuid: str, content_type: int) -> None: ...


class MoveTarget(Protocol):
    """What a step needs of its target (an ``Area`` is one)."""

    def create(self, uuid: str, content_type: int, data: bytes) -> object: ...

    def locate(self, uuid: str, content_type: int) -> list: ...


def move_attachment(attachment: Attachment, source: MoveSource, target: MoveTarget) -> str:
    """Moves one attachment from area ``source`` to area ``target``; returns MOVED, SKIPPED or MISSING.

    The bytes read from the source must match the size and MD5 of Orthanc's index before they are
    written; the write replaces any copy an interrupted move left on the target; the source is
    deleted only after the write succeeded (a store's ``put`` stores exactly the bytes given, which the
    server checks against a checksum). Raises ``StoreError`` (``IntegrityError`` for a source that does not
    match the index) on failure; the source copy is then always still in place.
    """
    uuid, content_type = attachment.uuid, attachment.content_type
    try:
        data = source.read(uuid, content_type)
    except NotFound:
        return SKIPPED if target.locate(uuid, content_type) else MISSING
    problem = matches_index(data, attachment)
    if problem:
        raise IntegrityError(f"the source copy is damaged ({problem}); left where it is", uuid)
    target.create(uuid, content_type, data)
    source.remove(uuid, content_type)
    return MOVED


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
            job.apply(record)
        if job.state in FINISHED_STATES:
            job.finished.set()
        else:
            job.state = PENDING  # was running when Orthanc stopped: runs again from its journal
        return job

    # -- the journal: one record per finished step, in this format only

    def record(self, step: int, outcome: str, error: str | None = None) -> dict:
        """Applies a finished step and returns its journal record (to append to the job's journal)."""
        attachment = self.plan[step] if self.plan else None
        size = 0 if outcome == MISSING or attachment is None else attachment.size
        record: dict = {"i": step, "o": outcome, "b": size}
        if error and attachment is not None:
            record["e"] = {"Uuid": attachment.uuid, "Resource": attachment.resource, "Error": error}
        self.apply(record)
        return record

    def apply(self, record: dict) -> None:
        """Applies a journal record written by ``record`` (when the job is reloaded)."""
        with self.lock:
            self.done[record["i"]] = (record["o"], record["b"])
            if record.get("e") and len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors.append(record["e"])

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
