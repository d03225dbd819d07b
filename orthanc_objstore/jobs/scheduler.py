"""Move jobs: the scheduler that runs them (``JobManager``) and the runner of one job (``JobRunner``).

``JobManager`` is the public side (submit, get, list, cancel) and the lifecycle (load, start, stop);
``JobRunner`` runs one job: planning, a bounded pool of steps (SPEC MOVE-6), the journal, the end.
Jobs run one after the other, highest priority first. ``stop()`` lets the steps in flight end and
leaves the rest for the next start; persisted jobs answer over REST as soon as they are loaded.
``limits(job)`` (set by whoever submits background jobs, e.g. the tiering policy) may bound a job's
parallel steps and pause it: a paused job, or one a higher-priority job is waiting behind, stops
submitting steps, goes back to Pending and resumes from its journal when it may run again.
"""

import concurrent.futures
import logging
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass

from ..areas.contract import Area
from ..errors import StoreError
from ..port.index import OrthancIndex
from .journal import JobStore
from .steps import (
    ERROR_CANCELED,
    ERROR_STORAGE,
    FAILED,
    FAILURE,
    FINISHED_STATES,
    JOB_ID_PREFIX,
    MISSING,
    PENDING,
    RUNNING,
    SUCCESS,
    MoveJob,
    move_attachment,
    other_storage,
    plan,
)

log = logging.getLogger("orthanc_objstore.jobs.steps")

PAUSED_RECHECK_SECONDS = 5.0  # how often the worker looks whether a paused job may run again


@dataclass(frozen=True)
class JobLimits:
    """Bounds of one job: at most ``workers`` steps at once; ``may_run()`` False pauses it."""

    workers: int
    may_run: Callable[[], bool] = lambda: True


def _no_limits(job: MoveJob) -> JobLimits | None:
    return None


def _no_step(outcome: str, size: int) -> None:
    pass


class JobManager:
    """Holds the move jobs and runs them in one worker thread, one job at a time.

    ``areas(name)`` gives the area of a storage (``file-system``/``object-storage``).
    """

    def __init__(self, index: OrthancIndex, areas: Callable[[str], Area], job_store: JobStore, workers: int = 8,
                 keep_finished: int = 100, on_step: Callable[[str, int], None] | None = None):
        self.job_store = job_store
        self.keep_finished = keep_finished
        self.limits: Callable[[MoveJob], JobLimits | None] = _no_limits
        self._stop = threading.Event()
        # on_step: the metrics' (outcome, bytes) of each finished step
        self.runner = JobRunner(index, areas, job_store, workers, self._stop, on_step or _no_step)
        self._jobs: dict[str, MoveJob] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loaded = False

    # -- public side

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
        return self._stop.is_set()

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
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="objstore-move", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._wake:
            self._stop.set()
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- the worker thread

    def _may_run(self, job: MoveJob) -> bool:
        limits = self.limits(job)
        return limits is None or limits.may_run()

    def _next(self) -> MoveJob | None:
        pending = [job for job in self._jobs.values() if job.state == PENDING and self._may_run(job)]
        return min(pending, key=lambda job: (-job.priority, job.created)) if pending else None

    def _should_pause(self, job: MoveJob) -> bool:
        """Whether a running job must give way: it may not run now, or a higher-priority job waits."""
        if not self._may_run(job):
            return True
        with self._wake:
            waiting = self._next()
        return waiting is not None and waiting.priority > job.priority

    def _run(self):
        while True:
            with self._wake:
                while not self._stop.is_set() and self._next() is None:
                    self._wake.wait(PAUSED_RECHECK_SECONDS)
                if self._stop.is_set():
                    return
                job = self._next()
            assert job is not None
            try:
                end = self.runner.run(job, self.limits(job), self._should_pause)
            except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not kill the worker
                log.exception("move job %s failed", job.id)
                self._finish(job, FAILURE, (ERROR_STORAGE[0], f"internal error: {type(exc).__name__}: {exc}"))
                continue
            if end is not None:
                self._finish(job, *end)

    def _finish(self, job: MoveJob, state: str, error: tuple[int, str]):
        with job.lock:
            if job.state in FINISHED_STATES:
                return
            job.state = state
            job.error = tuple(error)
            job.completed = time.time()
        self.job_store.save(job.id, job.document())
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


class JobRunner:
    """Runs one job: plan (once, saved), steps in a bounded pool, each journaled at once.

    ``run`` returns how the job ended, ``(state, error)``, for the manager to record; or None when it is not
    finished: it was not pending, Orthanc is stopping (``stop`` is set), or it must give way (``must_yield``),
    and it is Pending again, to resume from its journal."""

    def __init__(self, index: OrthancIndex, areas: Callable[[str], Area], job_store: JobStore, workers: int,
                 stop: threading.Event, on_step: Callable[[str, int], None]):
        self.index = index
        self.areas = areas
        self.job_store = job_store
        self.workers = workers
        self.stop = stop
        self.on_step = on_step

    def run(self, job: MoveJob, limits: JobLimits | None = None,
            must_yield: Callable[[MoveJob], bool] = lambda job: False) -> tuple[str, tuple[int, str]] | None:
        with job.lock:
            if job.state != PENDING:
                return None
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
        source = self.areas(other_storage(job.target))
        target = self.areas(job.target)
        todo = [step for step in range(len(job.plan or [])) if step not in job.done]
        workers = min(self.workers, limits.workers) if limits else self.workers
        in_flight = threading.BoundedSemaphore(workers * 2)
        paused = False
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="objstore-move") as pool:
            for step in todo:
                if job.cancel_requested or self.stop.is_set():
                    break
                if must_yield(job):
                    paused = True
                    break
                in_flight.acquire()
                future = pool.submit(self._step, job, step, source, target)
                future.add_done_callback(lambda _: in_flight.release())
        if self.stop.is_set() and not job.cancel_requested:
            with job.lock:
                job.state = PENDING  # resumed at the next start
            log.warning("move job %s interrupted by Orthanc stopping; it resumes at the next start", job.id)
            return None
        if job.cancel_requested:
            return FAILURE, ERROR_CANCELED
        if paused:
            with job.lock:
                job.state = PENDING  # resumes from its journal when it may run again
            log.info("move job %s paused (%d of %d files done)", job.id, len(job.done), len(job.plan or []))
            return None
        counts = job.counts()
        if counts["FailedFiles"]:
            description = (f"{counts['FailedFiles']} of {counts['TotalFiles']} file(s) could not be moved "
                           f"(first: {job.errors[0]['Error'] if job.errors else '?'}); they are still on "
                           f"the {other_storage(job.target)} side; post the same request again to retry them")
            return FAILURE, (ERROR_STORAGE[0], description)
        return SUCCESS, (0, "Success")

    def _step(self, job: MoveJob, step: int, source: Area, target: Area):
        attachment = (job.plan or [])[step]
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
        record = job.record(step, outcome, error)
        self.job_store.append(job.id, record)
        self.on_step(outcome, record["b"])


def _summary(groups):
    return ", ".join(f"{len(ids)} {group.lower()}" for group, ids in groups.items())
