"""Asynchronous adoptions (``POST /objstore/adopt`` with ``"Asynchronous": true``, and the indexer's rounds) as jobs.

An ``AdoptJob`` adopts every object under a prefix, then abandons the instances adopted under it whose object
has vanished: the work of ``Adopter.adopt_prefix``, with the same counts in its ``Content`` (``Failed`` holds
the first ``MAX_REPORTED_FAILURES``; ``FailedCount`` counts them all). ``AdoptManager`` runs one job at a time
in its thread, each object by one of the adopter's ``workers`` (one object in memory per worker; at most
``workers`` objects in flight), and lists them under ``/jobs`` beside the move jobs (``get``, ``jobs``,
``cancel``, as ``JobManager``).

Resuming: the keys are taken in sorted order (the stores list in that order) and the job's document keeps a
**watermark**, the last key below which every object is done, plus the few done above it while others were in
flight. It is saved at most every ``SAVE_SECONDS`` and when the job stops, ends or is cancelled. After a
restart the job lists the prefix again and goes on above its watermark: what it adopted is not read again
(after a kill, the objects of the last ``SAVE_SECONDS`` are adopted again, which adoption's idempotence makes
``AlreadyStored``). An object that fails while Orthanc stops is left undone (its post may have failed because
Orthanc was stopping): the next start tries it again. The abandon phase is recomputed from the registry, which
forgets what was abandoned.
Orthanc-free: Orthanc through the adopter's port.
"""

import collections
import logging
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from ..errors import StoreError
from ..port.index import OrthancCallError
from .adopt import ALREADY_STORED, SUCCESS, Adopter, Outcome
from .adopt import FAILURE as OBJECT_FAILURE
from .journal import JobStore
from .steps import ERROR_CANCELED, ERROR_STORAGE, FAILURE, FINISHED_STATES, JOB_ID_PREFIX, PENDING, RUNNING
from .steps import SUCCESS as JOB_SUCCESS

log = logging.getLogger("orthanc_objstore.jobs.adopt")

JOB_TYPE = "ObjstoreAdopt"
MAX_REPORTED_FAILURES = 100
SAVE_SECONDS = 1.0


class AdoptJob:
    """One adoption of a prefix: its request, counts, watermark and state. Thread-safe (``lock``)."""

    job_type = JOB_TYPE

    def __init__(self, job_id: str, prefix: str, owned: bool, origin: str = "", priority: int = 0,
                 created: float | None = None):
        self.id = job_id
        self.prefix = prefix
        self.owned = owned
        self.origin = origin  # "Indexer" for the indexer's jobs, "" for an administrator's
        self.priority = priority
        self.created = created if created is not None else time.time()
        self.state = PENDING
        self.error: tuple[int, str] = (0, "Success")
        self.started: float | None = None
        self.completed: float | None = None
        self.objects: int | None = None  # keys in the last listing
        self.processed = 0  # objects handled (adopted, already stored, failed, or skipped as the plugin's own)
        self.watermark: str | None = None  # every key <= watermark is done
        self.done_above: set[str] = set()  # keys above the watermark that are done
        self.adopted = self.already_stored = self.abandoned = self.failed_count = 0
        self.failed: list[dict] = []
        self.cancel_requested = False
        self.finished = threading.Event()
        self.lock = threading.Lock()

    def is_done(self, key: str) -> bool:
        return (self.watermark is not None and key <= self.watermark) or key in self.done_above

    def record(self, key: str, outcome: Outcome | None) -> None:
        with self.lock:
            self.processed += 1
            self.done_above.add(key)
            if outcome is None:
                return
            if outcome.status == SUCCESS:
                self.adopted += 1
            elif outcome.status == ALREADY_STORED:
                self.already_stored += 1
            else:
                self.fail(key, outcome.error)

    def fail(self, key: str, error: str) -> None:
        """Counts a failure (``lock`` held); only the first ``MAX_REPORTED_FAILURES`` are listed."""
        self.failed_count += 1
        if len(self.failed) < MAX_REPORTED_FAILURES:
            self.failed.append({"Key": key, "Error": error})

    def advance(self, window: collections.deque) -> None:
        """Moves the watermark over the keys at the head of ``window`` (in key order) that are done."""
        with self.lock:
            while window and window[0] in self.done_above:
                self.watermark = window.popleft()
                self.done_above.discard(self.watermark)

    def document(self) -> dict:
        with self.lock:
            return {"ID": self.id, "Type": JOB_TYPE, "Prefix": self.prefix, "TakeOwnership": self.owned,
                    "Origin": self.origin, "Priority": self.priority, "Created": self.created, "State": self.state,
                    "Error": list(self.error), "Started": self.started, "Completed": self.completed,
                    "Objects": self.objects, "Processed": self.processed, "Watermark": self.watermark,
                    "DoneAbove": sorted(self.done_above), "Adopted": self.adopted,
                    "AlreadyStored": self.already_stored, "Abandoned": self.abandoned, "Failed": list(self.failed),
                    "FailedCount": self.failed_count}

    @classmethod
    def from_document(cls, document: dict) -> "AdoptJob":
        if document.get("Type") != JOB_TYPE or not isinstance(document.get("Prefix"), str):
            raise ValueError("not an adopt job")
        job = cls(document["ID"], document["Prefix"], bool(document["TakeOwnership"]), document.get("Origin", ""),
                  document.get("Priority", 0), document["Created"])
        job.state = document["State"]
        job.error = tuple(document.get("Error") or (0, "Success"))
        job.started, job.completed = document.get("Started"), document.get("Completed")
        job.objects, job.processed = document.get("Objects"), document.get("Processed", 0)
        job.watermark = document.get("Watermark")
        job.done_above = set(document.get("DoneAbove") or ())
        job.adopted, job.already_stored = document.get("Adopted", 0), document.get("AlreadyStored", 0)
        job.abandoned, job.failed_count = document.get("Abandoned", 0), document.get("FailedCount", 0)
        job.failed = list(document.get("Failed") or [])
        if job.state in FINISHED_STATES:
            job.finished.set()
        else:
            job.state = PENDING  # was running when Orthanc stopped: goes on from its watermark
        return job

    def content(self) -> dict:
        """The synchronous answer's counts, with the request and the progress in objects."""
        with self.lock:
            return {"Prefix": self.prefix, "TakeOwnership": self.owned, "Adopted": self.adopted,
                    "AlreadyStored": self.already_stored, "Abandoned": self.abandoned, "Failed": list(self.failed),
                    "FailedCount": self.failed_count, "Objects": self.objects, "ProcessedObjects": self.processed,
                    **({"Origin": self.origin} if self.origin else {})}

    def progress(self) -> int:
        with self.lock:
            if self.state == JOB_SUCCESS:
                return 100
            if not self.objects:
                return 0
            return min(99, int(100 * self.processed / self.objects))


class AdoptManager:
    """Holds the adopt jobs and runs them one at a time in its thread (``start``/``stop``); persisted in
    ``job_store``, resumed at the next start."""

    def __init__(self, adopter: Adopter, job_store: JobStore, keep_finished: int = 100,
                 save_seconds: float = SAVE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.adopter = adopter
        self.job_store = job_store
        self.keep_finished = keep_finished
        self.save_seconds = save_seconds
        self.clock = clock
        self._jobs: dict[str, AdoptJob] = {}
        self._running: AdoptJob | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loaded = False

    # -- public side (the same as JobManager's, for the /jobs routes)

    def submit(self, prefix: str, owned: bool, origin: str = "") -> AdoptJob:
        job = AdoptJob(JOB_ID_PREFIX + str(uuidlib.uuid4()), prefix, owned, origin)
        self.job_store.save(job.id, job.document())
        with self._wake:
            self._jobs[job.id] = job
            self._wake.notify_all()
        log.info("adopt job %s created (prefix %r, %s)", job.id, prefix, "owned" if owned else "not owned")
        return job

    def get(self, job_id: str) -> AdoptJob | None:
        with self._wake:
            return self._jobs.get(job_id)

    def jobs(self) -> list[AdoptJob]:
        with self._wake:
            return sorted(self._jobs.values(), key=lambda job: job.created)

    def active(self, prefix: str) -> AdoptJob | None:
        """An unfinished job of ``prefix``, if any (the indexer submits no second one)."""
        with self._wake:
            return next((job for job in self._jobs.values()
                         if job.prefix == prefix and job.state not in FINISHED_STATES), None)

    def cancel(self, job_id: str) -> bool:
        """Cancels a job: a running one stops after the objects in flight, a pending one at once."""
        with self._wake:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED_STATES:
                return False
            job.cancel_requested = True
            waiting = job is not self._running
            self._wake.notify_all()
        if waiting:
            self._finish(job, FAILURE, ERROR_CANCELED)
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
                job = AdoptJob.from_document(document)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("adopt job %s cannot be reloaded and is ignored: %s", document.get("ID"), exc)
                continue
            with self._wake:
                self._jobs.setdefault(job.id, job)
            if job.state == PENDING:
                log.warning("adopt job %s (prefix %r) resumes after %d object(s) done", job.id, job.prefix,
                            job.processed)
        self._prune()

    def start(self) -> None:
        self.load()
        with self._wake:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="objstore-adopt-jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- the worker thread

    def _take(self) -> AdoptJob | None:
        """The oldest pending job, now running; None when there is none (``_wake`` held)."""
        pending = sorted((job for job in self._jobs.values() if job.state == PENDING and not job.cancel_requested),
                         key=lambda job: job.created)
        if not pending:
            return None
        job = self._running = pending[0]
        with job.lock:
            job.state = RUNNING
            job.started = job.started or time.time()
        return job

    def _run(self) -> None:
        while True:
            with self._wake:
                job = None
                while not self._stopping and job is None:
                    job = self._take()
                    if job is None:
                        self._wake.wait()
            if job is None:
                return
            self._run_one(job)

    def run_next(self) -> AdoptJob | None:
        """Runs the oldest pending job in the calling thread (the manager's thread does this when started)."""
        with self._wake:
            job = self._take()
        if job is not None:
            self._run_one(job)
        return job

    def _run_one(self, job: AdoptJob) -> None:
        try:
            self.run(job)
        except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not kill the worker
            log.exception("adopt job %s failed", job.id)
            self._finish(job, FAILURE, (ERROR_STORAGE[0], f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            with self._wake:
                self._running = None

    def _interrupted(self, job: AdoptJob) -> bool:
        return job.cancel_requested or self._stopping

    def run(self, job: AdoptJob) -> None:
        """Runs ``job`` (already ``Running``) until it ends, is cancelled, or the manager stops (then ``Pending``)."""
        try:
            entries = self.adopter.entries_under(job.prefix)
            keys = sorted(self.adopter.keys_under(job.prefix))
        except (StoreError, OrthancCallError) as exc:
            self._finish(job, FAILURE, (ERROR_STORAGE[0], f"the objects under {job.prefix!r} could not be listed: "
                                        f"{exc}"))
            return
        with job.lock:
            job.objects = len(keys)
        self._save(job)
        self._adopt(job, keys, entries)
        if not self._interrupted(job):
            self._abandon(job, set(keys), entries)
        if job.cancel_requested:
            self._finish(job, FAILURE, ERROR_CANCELED)
        elif self._stopping:
            with job.lock:
                job.state = PENDING
            self._save(job)
            log.info("adopt job %s stopped with Orthanc after %d object(s); it resumes at the next start", job.id,
                     job.processed)
        else:
            self._finish(job, JOB_SUCCESS, (0, "Success"))

    def _adopt(self, job: AdoptJob, keys: list[str], entries: dict[str, dict]) -> None:
        todo = iter([key for key in keys if not job.is_done(key)])
        window: collections.deque = collections.deque()  # keys submitted, in key order, above the watermark
        in_flight: dict[Future, str] = {}
        saved = self.clock()
        workers = max(1, self.adopter.workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="objstore-adopt") as pool:
            while True:
                while len(in_flight) < workers and not self._interrupted(job):
                    key = next(todo, None)
                    if key is None:
                        break
                    window.append(key)
                    in_flight[pool.submit(self.adopter.adopt_one, key, job.owned, entries.get(key))] = key
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    key, outcome = in_flight.pop(future), future.result()  # adopt_one never raises
                    if outcome is not None and outcome.status == OBJECT_FAILURE and self._stopping:
                        continue  # most likely Orthanc stopping under it: not done, tried again at the next start
                    job.record(key, outcome)
                job.advance(window)
                if self.clock() - saved >= self.save_seconds:
                    self._save(job)
                    saved = self.clock()
        self._save(job)

    def _abandon(self, job: AdoptJob, present: set[str], entries: dict[str, dict]) -> None:
        for key in sorted(entries.keys() - present):
            if self._interrupted(job):
                return
            outcome = self.adopter.abandon_instance(key)  # never raises
            with job.lock:
                if outcome.status == SUCCESS:
                    job.abandoned += 1
                else:
                    job.fail(key, outcome.error)
            self._save(job)

    def _save(self, job: AdoptJob) -> None:
        try:
            self.job_store.save(job.id, job.document())
        except OSError as exc:  # the job goes on; a restart before the next save redoes a little more
            log.warning("adopt job %s: its state could not be saved (%s)", job.id, exc)

    def _finish(self, job: AdoptJob, state: str, error: tuple[int, str]) -> None:
        with job.lock:
            if job.state in FINISHED_STATES:
                return
            job.state = state
            job.error = error
            job.completed = time.time()
        self._save(job)
        job.finished.set()
        content = job.content()
        log.info("adopt job %s (prefix %r): %s (%d adopted, %d already stored, %d abandoned, %d failed)%s", job.id,
                 job.prefix, state, content["Adopted"], content["AlreadyStored"], content["Abandoned"],
                 content["FailedCount"], "" if state == JOB_SUCCESS else f": {error[1]}")
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
