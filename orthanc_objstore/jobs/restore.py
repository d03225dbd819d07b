"""Restore jobs (SPEC COLD-1): ask for the restore of every attachment of some resources, then wait until readable.

Orthanc-free: the attachments come from Orthanc's index (``index.OrthancIndex``, the same plan as a move:
every attachment of the resources and of the resources below them), the restores from the area
(``Area.cold_state`` / ``Area.restore``, i.e. ``storage.Restorable``).

Each attachment has one outcome: ``readable`` (already readable, not touched), ``requested`` (a restore
was asked for now), ``in_progress`` (a restore was already running), ``missing`` or ``failed``; and
``ReadableFiles`` counts those readable now (already, or restored since: some stores restore at once).
``restore_now`` does this once and returns the counts (the synchronous ``POST /objstore/restore``).
A ``RestoreJob`` (``"Asynchronous": true``) does the same, then polls the files being restored with a
growing delay (``POLL_FIRST_SECONDS`` doubling up to ``POLL_MAX_SECONDS``) and succeeds when every one is
readable; it fails when some file failed or is missing (after the others are readable), or when
cancelled (a cancel stops the polling; the restores already asked for go on at the provider).
``RestoreManager`` runs the jobs in one thread, saves each job's document (plan, outcomes, files
readable) after every phase and poll round, and resumes unfinished jobs at the next start.
"""

import logging
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import asdict

from ..areas.contract import Area
from ..errors import NotFound, StoreError
from ..port.index import Attachment, OrthancIndex
from .journal import JobStore
from .steps import (
    ERROR_CANCELED,
    ERROR_STORAGE,
    FAILURE,
    FINISHED_STATES,
    JOB_ID_PREFIX,
    PENDING,
    RUNNING,
    SUCCESS,
    plan,
)

log = logging.getLogger("orthanc_objstore.jobs.restore")

JOB_TYPE = "ObjstoreRestore"
READABLE, REQUESTED, IN_PROGRESS, MISSING, FAILED = "readable", "requested", "in_progress", "missing", "failed"
OUTCOMES = (READABLE, REQUESTED, IN_PROGRESS, MISSING, FAILED)
POLL_FIRST_SECONDS = 5.0
POLL_MAX_SECONDS = 900.0
MAX_REPORTED_ERRORS = 100


def restore_one(area: Area, attachment: Attachment, days: int, tier: str) -> tuple[str, str | None, bool]:
    """(outcome, error, readable after the request) for one attachment: readable ones are left alone, cold
    ones get a restore (some stores, e.g. moto or Azurite, restore at once)."""
    try:
        state = area.cold_state(attachment.uuid, attachment.content_type)
        if state.readable:
            return READABLE, None, True
        if state.restore == "in-progress":
            return IN_PROGRESS, None, False
        after = area.restore(attachment.uuid, attachment.content_type, days, tier)
        return REQUESTED, None, after.readable
    except NotFound:
        return MISSING, "in no storage", False
    except StoreError as exc:
        return FAILED, str(exc), False
    except Exception as exc:  # noqa: BLE001 - one file's failure is reported, the others go on
        return FAILED, f"{type(exc).__name__}: {exc}", False


def summary(planned: list[Attachment], outcomes: dict[int, str], errors: list[dict], ready: set[int]) -> dict:
    """The counts shown by the synchronous answer and by a job's ``Content``."""
    counted = {outcome: 0 for outcome in OUTCOMES}
    for outcome in outcomes.values():
        counted[outcome] += 1
    return {"TotalFiles": len(planned), "AlreadyReadableFiles": counted[READABLE],
            "RestoreRequestedFiles": counted[REQUESTED], "RestoreInProgressFiles": counted[IN_PROGRESS],
            "ReadableFiles": counted[READABLE] + len(ready), "MissingFiles": counted[MISSING],
            "FailedFiles": counted[FAILED], "Errors": list(errors)}


def restore_now(index: OrthancIndex, area: Area, groups: dict[str, list[str]], days: int, tier: str,
                on_step: Callable[[str], None] = lambda outcome: None) -> dict:
    """Asks for the restore of every attachment of ``groups`` once; the counts of what it found."""
    planned = plan(index, groups)
    outcomes: dict[int, str] = {}
    ready: set[int] = set()
    errors: list[dict] = []
    for step, attachment in enumerate(planned):
        outcome, error, readable = restore_one(area, attachment, days, tier)
        outcomes[step] = outcome
        if readable and outcome != READABLE:
            ready.add(step)
        on_step(outcome)
        if error and len(errors) < MAX_REPORTED_ERRORS:
            errors.append({"Uuid": attachment.uuid, "Resource": attachment.resource, "Error": error})
    return {**groups, "Days": days, "Tier": tier, **summary(planned, outcomes, errors, ready)}


class RestoreJob:
    """One restore job: its request, plan, outcomes, files that became readable, and state. Thread-safe."""

    job_type = JOB_TYPE

    def __init__(self, job_id: str, groups: dict[str, list[str]], days: int, tier: str, priority: int = 0,
                 created: float | None = None):
        self.id = job_id
        self.groups = groups
        self.days = days
        self.tier = tier
        self.priority = priority
        self.created = created if created is not None else time.time()
        self.state = PENDING
        self.error: tuple[int, str] = (0, "Success")
        self.plan: list[Attachment] | None = None
        self.outcomes: dict[int, str] = {}
        self.ready: set[int] = set()  # files restored (requested or in progress) that are readable now
        self.errors: list[dict] = []
        self.started: float | None = None
        self.completed: float | None = None
        self.polls = 0
        self.next_poll = 0.0
        self.cancel_requested = False
        self.finished = threading.Event()
        self.lock = threading.Lock()

    def document(self) -> dict:
        with self.lock:
            return {"ID": self.id, "Type": JOB_TYPE, "Resources": self.groups, "Days": self.days, "Tier": self.tier,
                    "Priority": self.priority, "Created": self.created, "State": self.state,
                    "Error": list(self.error), "Completed": self.completed, "Polls": self.polls,
                    "Plan": None if self.plan is None else [list(asdict(a).values()) for a in self.plan],
                    "Outcomes": {str(step): outcome for step, outcome in self.outcomes.items()},
                    "Ready": sorted(self.ready), "Errors": self.errors}

    @classmethod
    def from_document(cls, document: dict) -> "RestoreJob":
        job = cls(document["ID"], document["Resources"], document["Days"], document["Tier"],
                  document.get("Priority", 0), document["Created"])
        job.state = document["State"]
        job.error = tuple(document.get("Error") or (0, "Success"))
        job.completed = document.get("Completed")
        job.polls = document.get("Polls", 0)
        if document.get("Plan") is not None:
            job.plan = [Attachment(*fields) for fields in document["Plan"]]
        job.outcomes = {int(step): outcome for step, outcome in (document.get("Outcomes") or {}).items()}
        job.ready = set(document.get("Ready") or ())
        job.errors = list(document.get("Errors") or [])
        if job.state in FINISHED_STATES:
            job.finished.set()
        else:
            job.state = PENDING  # was running when Orthanc stopped: goes on from its document
        return job

    def waiting(self) -> list[int]:
        """The files being restored that were not seen readable yet."""
        with self.lock:
            return [step for step, outcome in self.outcomes.items()
                    if outcome in (REQUESTED, IN_PROGRESS) and step not in self.ready]

    def counts(self) -> dict:
        with self.lock:
            return summary(self.plan or [], dict(self.outcomes), list(self.errors), set(self.ready))

    def content(self) -> dict:
        return {**self.groups, "Days": self.days, "Tier": self.tier, **self.counts()}

    def progress(self) -> int:
        with self.lock:
            if self.state == SUCCESS:
                return 100
            if not self.plan:
                return 0
            done = sum(1 for step, outcome in self.outcomes.items()
                       if outcome in (READABLE, MISSING, FAILED) or step in self.ready)
            return int(100 * done / len(self.plan))


class RestoreManager:
    """Holds the restore jobs and runs them in one thread: requests first, then polls with backoff."""

    def __init__(self, index: OrthancIndex, area: Area, job_store: JobStore, keep_finished: int = 100,
                 on_step: Callable[[str], None] | None = None, poll_first: float = POLL_FIRST_SECONDS,
                 poll_max: float = POLL_MAX_SECONDS):
        self.index = index
        self.area = area
        self.job_store = job_store
        self.keep_finished = keep_finished
        self.on_step = on_step or (lambda outcome: None)
        self.poll_first = poll_first
        self.poll_max = poll_max
        self._jobs: dict[str, RestoreJob] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loaded = False

    # -- public side (the same as JobManager's, for the /jobs routes)

    def submit(self, groups: dict[str, list[str]], days: int, tier: str) -> RestoreJob:
        job = RestoreJob(JOB_ID_PREFIX + str(uuidlib.uuid4()), groups, days, tier)
        self.job_store.save(job.id, job.document())
        with self._wake:
            self._jobs[job.id] = job
            self._wake.notify_all()
        log.info("restore job %s created (%d days, tier %s)", job.id, days, tier)
        return job

    def get(self, job_id: str) -> RestoreJob | None:
        with self._wake:
            return self._jobs.get(job_id)

    def jobs(self) -> list[RestoreJob]:
        with self._wake:
            return sorted(self._jobs.values(), key=lambda job: job.created)

    def cancel(self, job_id: str) -> bool:
        job = self.get(job_id)
        if job is None:
            return False
        with job.lock:
            if job.state in FINISHED_STATES:
                return False
            job.cancel_requested = True
        with self._wake:
            self._wake.notify_all()
        return True

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- lifecycle

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for document, _ in self.job_store.load_all():
            try:
                job = RestoreJob.from_document(document)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("restore job %s cannot be reloaded and is ignored: %s", document.get("ID"), exc)
                continue
            with self._wake:
                self._jobs.setdefault(job.id, job)
            if job.state == PENDING:
                log.warning("restore job %s resumes (%d file(s) still being restored)", job.id, len(job.waiting()))
        self._prune()

    def start(self) -> None:
        self.load()
        with self._wake:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="objstore-restore", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- the worker thread

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                now = time.monotonic()
                active = [job for job in self._jobs.values() if job.state in (PENDING, RUNNING)]
                due = [job for job in active if job.cancel_requested or job.state == PENDING or job.next_poll <= now]
                if not due:
                    wait = min((job.next_poll - now for job in active), default=self.poll_max)
                    self._wake.wait(max(0.05, wait))
                    continue
            for job in due:
                if self._stopping:
                    return
                try:
                    self._advance(job)
                except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not kill the worker
                    log.exception("restore job %s failed", job.id)
                    self._finish(job, FAILURE, (ERROR_STORAGE[0], f"internal error: {type(exc).__name__}: {exc}"))

    def _advance(self, job: RestoreJob) -> None:
        """One turn of a job: cancel, or the request phase (a new or resumed job), or one poll round."""
        if job.cancel_requested:
            self._finish(job, FAILURE, ERROR_CANCELED)
            return
        if job.state == PENDING:
            self._request(job)
            if job.state == PENDING:  # interrupted by Orthanc stopping: goes on at the next start
                return
            delay = self.poll_first
        else:
            self._poll(job)
            delay = min(self.poll_max, self.poll_first * 2 ** job.polls)
        if job.state in FINISHED_STATES:
            return
        if not job.waiting():
            self._end(job)
            return
        job.next_poll = time.monotonic() + delay
        self.job_store.save(job.id, job.document())

    def _request(self, job: RestoreJob) -> None:
        with job.lock:
            job.state = RUNNING
            job.started = job.started or time.time()
        if job.plan is None:
            planned = plan(self.index, job.groups)
            with job.lock:
                job.plan = planned
            self.job_store.save(job.id, job.document())
            log.info("restore job %s: %d file(s)", job.id, len(planned))
        for step, attachment in enumerate(job.plan or []):
            if step in job.outcomes:
                continue
            if job.cancel_requested or self._stopping:
                break
            outcome, error, readable = restore_one(self.area, attachment, job.days, job.tier)
            with job.lock:
                job.outcomes[step] = outcome
                if readable and outcome != READABLE:
                    job.ready.add(step)
                if error and len(job.errors) < MAX_REPORTED_ERRORS:
                    job.errors.append({"Uuid": attachment.uuid, "Resource": attachment.resource, "Error": error})
            self.on_step(outcome)
            if error:
                log.warning("restore job %s: attachment %s of %s: %s", job.id, attachment.uuid, attachment.resource,
                            error)
        if self._stopping and len(job.outcomes) < len(job.plan or []):
            with job.lock:
                job.state = PENDING
        self.job_store.save(job.id, job.document())

    def _poll(self, job: RestoreJob) -> None:
        plan_ = job.plan or []
        for step in job.waiting():
            if job.cancel_requested or self._stopping:
                return
            attachment = plan_[step]
            try:
                readable = self.area.cold_state(attachment.uuid, attachment.content_type).readable
            except StoreError as exc:
                log.info("restore job %s: attachment %s not checked this round: %s", job.id, attachment.uuid, exc)
                continue
            if readable:
                with job.lock:
                    job.ready.add(step)
        with job.lock:
            job.polls += 1

    def _end(self, job: RestoreJob) -> None:
        counts = job.counts()
        bad = counts["FailedFiles"] + counts["MissingFiles"]
        if bad:
            first = job.errors[0]["Error"] if job.errors else "?"
            self._finish(job, FAILURE, (ERROR_STORAGE[0], f"{bad} of {counts['TotalFiles']} file(s) could not be "
                                        f"restored (first: {first}); the others are readable"))
        else:
            self._finish(job, SUCCESS, (0, "Success"))

    def _finish(self, job: RestoreJob, state: str, error: tuple[int, str]) -> None:
        with job.lock:
            if job.state in FINISHED_STATES:
                return
            job.state = state
            job.error = error
            job.completed = time.time()
        self.job_store.save(job.id, job.document())
        job.finished.set()
        counts = job.counts()
        log.info("restore job %s: %s (%d readable of %d, %d failed, %d missing)", job.id, state,
                 counts["ReadableFiles"], counts["TotalFiles"], counts["FailedFiles"], counts["MissingFiles"])
        self._prune()

    def _prune(self) -> None:
        with self._wake:
            finished = sorted((job for job in self._jobs.values() if job.state in FINISHED_STATES),
                              key=lambda job: job.created)
            forgotten = finished[:max(0, len(finished) - self.keep_finished)]
            for job in forgotten:
                del self._jobs[job.id]
        for job in forgotten:
            self.job_store.delete(job.id)
