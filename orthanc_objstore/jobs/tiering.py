"""Automatic tiering (SPEC HYB-5): studies older than ``MoveToObjectStorageAfter`` move to object storage by themselves.

Orthanc-free: it lists studies through the port (``index.OrthancApi``) and submits ordinary move jobs
(``jobs.JobManager``). Every ``CheckEvery``, inside ``Window``, a pass pages through
``/studies?expand&since&limit`` (one request per ``PAGE_SIZE`` studies) and reads each study's
``LastUpdate`` (Orthanc writes it in UTC, ``YYYYMMDDTHHMMSS``, at every new instance). Studies older
than the threshold go to object storage in move jobs of up to ``STUDIES_PER_JOB`` studies, one job at
a time, at priority ``TIERING_PRIORITY``; the job plan skips files already there.

What was moved is remembered in a small append-only state file, by study id **and** LastUpdate: a
later pass skips such a study without any request, and a new instance (a new LastUpdate) makes it
examined again, so the new file moves when the study is old again. The state file also names the
policy's unfinished jobs, so that after a restart they keep their bound (``MaxConcurrentFiles``) and
their window (``JobManager.limits``), and their studies are recorded when they succeed.
"""

import calendar
import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..areas.contract import OBJECT_STORAGE
from ..port.index import OrthancApi, OrthancCallError
from .scheduler import JobLimits, JobManager
from .steps import FINISHED_STATES, SUCCESS, MoveJob

log = logging.getLogger("orthanc_objstore.jobs.tiering")

TIERING_PRIORITY = -100  # below the default 0 of jobs an administrator starts
PAGE_SIZE = 1000
STUDIES_PER_JOB = 100
JOB_POLL_SECONDS = 1.0
COMPACT_AFTER_RECORDS = 1000


def last_update_epoch(text: str) -> float:
    """Seconds since the epoch of Orthanc's ``LastUpdate`` (``20261201T112233``, UTC)."""
    return calendar.timegm(time.strptime(text[:15], "%Y%m%dT%H%M%S"))


@dataclass
class PassReport:
    """What one pass did, for the log and the tests."""

    examined: int = 0
    already_moved: int = 0
    recent: int = 0
    submitted: int = 0
    moved: int = 0
    requests: int = 0
    complete: bool = False
    jobs: list[str] = field(default_factory=list)


class TieringState:
    """The state file: studies moved (id → LastUpdate when moved) and the policy's unfinished jobs.

    One JSON object per line, appended: ``{"job": id, "studies": [[study, last], ...]}`` when a job is
    submitted, ``{"moved": [[study, last], ...]}`` and ``{"closed": id}`` when it ends. A line cut by a
    crash is ignored (its job is then only re-examined). Rewritten whole by ``compact``.
    """

    def __init__(self, path: str):
        self.path = path
        self.moved: dict[str, str] = {}
        self.jobs: dict[str, list[tuple[str, str]]] = {}
        self.records = 0
        self._lock = threading.Lock()
        try:
            with open(path) as file:
                for line in file:
                    try:
                        self._apply(json.loads(line))
                    except (ValueError, KeyError, TypeError):
                        log.warning("tiering state %s: an unreadable line is ignored", path)
        except FileNotFoundError:
            pass

    def _apply(self, record: dict) -> None:
        self.records += 1
        if "job" in record:
            self.jobs[record["job"]] = [tuple(pair) for pair in record["studies"]]
        for study, last in record.get("moved", ()):
            self.moved[study] = last
        if "closed" in record:
            self.jobs.pop(record["closed"], None)

    def append(self, record: dict) -> None:
        with self._lock:
            self._apply(record)
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "a") as file:
                file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def compact(self, live: set[str]) -> None:
        """Keeps only the studies in ``live`` (those the last full pass saw), rewritten atomically."""
        with self._lock:
            self.moved = {study: last for study, last in self.moved.items() if study in live}
            lines: list[dict] = [{"moved": [[study, last]]} for study, last in self.moved.items()]
            lines += [{"job": job_id, "studies": [list(pair) for pair in studies]}
                      for job_id, studies in self.jobs.items()]
            temporary = self.path + ".tmp"
            with open(temporary, "w") as file:
                file.writelines(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
            os.replace(temporary, self.path)
            self.records = len(lines)


class TieringPolicy:
    """Runs passes in a daemon thread (``start``/``stop``); ``limits`` is the ``JobManager.limits`` hook."""

    def __init__(self, api: OrthancApi, manager: JobManager, tiering, state_path: str,
                 clock: Callable[[], float] = time.time,
                 local_now: Callable[[], datetime.datetime] = datetime.datetime.now):
        self.api = api
        self.manager = manager
        self.tiering = tiering  # config.TieringConfig
        self.state = TieringState(state_path)
        self.clock = clock
        self.local_now = local_now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        manager.limits = self.limits

    # -- the job manager's hook

    def in_window(self) -> bool:
        return self.tiering.window is None or self.tiering.window.contains(self.local_now())

    def limits(self, job: MoveJob) -> JobLimits | None:
        if job.id not in self.state.jobs:
            return None  # an administrator's job
        return JobLimits(self.tiering.max_concurrent_files, self.in_window)

    # -- lifecycle

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="objstore-tiering", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.in_window():
                    self.run_pass()
            except OrthancCallError as exc:
                log.warning("tiering pass interrupted, retried in %d s: %s", self.tiering.check_every, exc)
            except Exception:  # noqa: BLE001 - a bug must not end the policy for good
                log.exception("tiering pass failed")
            self._stop.wait(self.tiering.check_every)

    # -- one pass

    def run_pass(self) -> PassReport:
        """Finishes the policy's earlier jobs, then pages through every study once."""
        report, started = PassReport(), time.monotonic()
        for job_id in list(self.state.jobs):
            if not self._wait(job_id, report):
                return report
        threshold, seen, batch, since = self.clock() - self.tiering.move_after, set(), [], 0
        while not self._stop.is_set() and self.in_window():
            report.requests += 1
            page = self.api.get_json(f"/studies?expand&since={since}&limit={PAGE_SIZE}") or []
            since += len(page)
            for study in page:
                study_id, last = study["ID"], study.get("LastUpdate", "")
                seen.add(study_id)
                report.examined += 1
                if self.state.moved.get(study_id) == last:
                    report.already_moved += 1
                elif last and last_update_epoch(last) > threshold:
                    report.recent += 1
                else:
                    batch.append((study_id, last))
                if len(batch) >= STUDIES_PER_JOB and not self._move(batch, report):
                    return report
            if len(page) < PAGE_SIZE:
                report.complete = not batch or self._move(batch, report)
                break
        if report.complete and (len(self.state.moved) > len(seen & self.state.moved.keys())
                                or self.state.records > COMPACT_AFTER_RECORDS):
            self.state.compact(seen)
        log.info("tiering pass%s: %d studies examined (%d already moved, %d recent), %d moved in %d job(s), "
                 "%d listing request(s), %.1f s", "" if report.complete else " (interrupted)", report.examined,
                 report.already_moved, report.recent, report.moved, len(report.jobs), report.requests,
                 time.monotonic() - started)
        return report

    def _move(self, batch: list[tuple[str, str]], report: PassReport) -> bool:
        """Submits one job for ``batch`` (emptied) and waits for it; False when the policy stops meanwhile."""
        studies, batch[:] = list(batch), []
        job = self.manager.submit({"Studies": [study for study, _ in studies]}, OBJECT_STORAGE, TIERING_PRIORITY)
        self.state.append({"job": job.id, "studies": [list(pair) for pair in studies]})
        report.submitted += len(studies)
        report.jobs.append(job.id)
        return self._wait(job.id, report)

    def _wait(self, job_id: str, report: PassReport) -> bool:
        """Waits for one of the policy's jobs and records its studies when it succeeded."""
        job = self.manager.get(job_id)
        while job is not None and not job.finished.wait(JOB_POLL_SECONDS):
            if self._stop.is_set():
                return False
        studies = self.state.jobs.get(job_id, [])
        if job is not None and job.state == SUCCESS:
            self.state.append({"moved": [list(pair) for pair in studies], "closed": job_id})
            report.moved += len(studies)
        else:  # failed or cancelled (the files left are on their side still), or forgotten: examined again
            state = job.state if job is not None and job.state in FINISHED_STATES else "unknown"
            log.warning("tiering: move job %s ended in %s; its %d studies are examined again at the next pass",
                        job_id, state, len(studies))
            self.state.append({"closed": job_id})
        return True
