"""Helpers of the stress tests: requests timed and recorded from many threads, and what Orthanc stores where."""

import os
import threading
import time

from .orthanc import HttpError, Orthanc

EXTENSIONS = {1: ".dcm", 2: ".json", 3: ".dcm.head"}  # the plugin's object names: uuid + extension


def request_bound(section: dict, storage_operations: int, slack: float = 10.0) -> float:
    """The longest an answer may take when each of ``storage_operations`` store calls fails in the slowest
    way the storage section allows: every attempt (1 + MaxRetries) times out connecting and then reading,
    with botocore's standard backoff (at most 2**i s before retry i) between them; plus ``slack`` for
    Orthanc's own work on a loaded machine. Past that, the request is not slow: it hangs."""
    retries = section["MaxRetries"]
    per_operation = (retries + 1) * (section["ConnectTimeout"] + section["RequestTimeout"]) + (2 ** retries - 1)
    return storage_operations * per_operation + slack


class Unanswered(Exception):
    """A request that got no HTTP answer within its bound (the Orthanc froze, crashed or hung)."""


class Recorder:
    """Sends requests for many threads and keeps, per kind, the count, the errors and the worst latency."""

    def __init__(self, orthanc: Orthanc, bound: float):
        self.orthanc = orthanc
        self.bound = bound
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.worst: dict[str, float] = {}
        self.unanswered: list[str] = []

    def call(self, kind: str, method: str, path: str, body=None) -> tuple[int, bytes]:
        """(status, body) for any HTTP answer, an error status included; Unanswered otherwise."""
        started = time.monotonic()
        try:
            status, answer = self.orthanc.request(method, path, body, timeout=self.bound)
        except HttpError as error:
            status, answer = error.status, error.body
        except Exception as exc:  # noqa: BLE001 - no answer at all, whatever the reason: recorded, then raised
            with self.lock:
                self.unanswered.append(f"{method} {path}: {type(exc).__name__}: {str(exc)[:300]}")
            raise Unanswered(f"{method} {path}: {exc}") from exc
        latency = time.monotonic() - started
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if status >= 400:
                self.errors[kind] = self.errors.get(kind, 0) + 1
            self.worst[kind] = max(self.worst.get(kind, 0.0), latency)
        return status, answer

    def total(self) -> int:
        return sum(self.counts.values()) + len(self.unanswered)

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {count} ({self.errors.get(kind, 0)} errors, worst {self.worst[kind]:.1f} s)"
                          for kind, count in sorted(self.counts.items()))
        worst = max(self.worst.values(), default=0.0)
        return (f"{self.total()} requests: {kinds}; worst latency {worst:.1f} s (bound {self.bound:.0f} s); "
                f"unanswered {len(self.unanswered)}")


def indexed_attachments(orthanc: Orthanc) -> dict[str, list[tuple[str, int]]]:
    """Every instance in Orthanc's index -> its attachments as (uuid, content type)."""
    found = {}
    for instance in orthanc.get_json("/instances"):
        kinds = orthanc.get_json(f"/instances/{instance}/attachments?full")
        found[instance] = [(orthanc.get_json(f"/instances/{instance}/attachments/{kind}/info")["Uuid"], kind)
                           for kind in kinds.values()]
    return found


def object_names(attachments) -> set[str]:
    """The objects the plugin keeps in the bucket for these (uuid, content type) attachments."""
    return {uuid + EXTENSIONS.get(kind, ".unk") for uuid, kind in attachments}


def storage_files(orthanc: Orthanc) -> set[str]:
    """Every attachment file in Orthanc's StorageDirectory (named by uuid), the plugin's jobs folder left out."""
    root = orthanc.host_path(orthanc.config["StorageDirectory"])
    found = set()
    for _, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in ("objstore-jobs", "objstore-deletions")]
        found |= {name for name in files if not name.startswith(".")}
    return found


def difference(label: str, actual: set[str], expected: set[str]) -> str:
    """'' when equal, else what is missing and what is extra (orphans)."""
    if actual == expected:
        return ""
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    return f"{label}: {len(missing)} missing {missing[:5]}, {len(extra)} orphans {extra[:5]}"
