"""Durable state of move jobs: a document per job, replaced atomically, and an append-only journal."""

import json
import logging
import os
import tempfile
import threading
from typing import Protocol

from .steps import JOB_ID_PREFIX

log = logging.getLogger("orthanc_objstore.jobs.steps")


class JobStore(Protocol):
    """Durable job state: a document per job (replaced atomically) and an append-only journal."""

    def save(self, job_id: str, document: dict) -> None: ...

    def append(self, job_id: str, record: dict) -> None: ...

    def close(self, job_id: str) -> None:
        """The job has finished: no more records will be appended (resources may be released)."""

    def load_all(self) -> list[tuple[dict, list[dict]]]: ...

    def delete(self, job_id: str) -> None: ...


class FileJobStore:
    """Job state in a folder: ``<id>.json`` written atomically, ``<id>.journal`` one JSON line per step."""

    def __init__(self, folder: str):
        self.folder = folder
        self._lock = threading.Lock()
        self._journals: dict = {}

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
