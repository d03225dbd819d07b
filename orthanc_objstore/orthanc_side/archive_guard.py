"""Archives that never come back silently incomplete (SPEC Q-1): the archive guard and its memory of failed reads.

Orthanc's archive and media jobs skip any instance whose file cannot be read ("An instance was
removed after the job was issued") and still answer 200, so a store outage yields an empty or partial
ZIP served as success. The guard answers the archive routes of patients, studies and series itself:
it runs the same core job asynchronously through ``/tools/create-archive`` or ``/tools/create-media``
(a synchronous call from a plugin deadlocks on Python plugin 4.0, and the port reaches core routes
that this plugin does not override), waits for it, and serves the ZIP only if no file of the archive
failed to be read meanwhile; otherwise it answers 503 naming the files. The ZIP is held in memory
while it is answered (Python plugin 4.0 cannot stream).

Only on Orthanc < 1.11 (Debian 12's 1.10.1): Orthanc 1.13.0 crashes (SIGSEGV) as soon as a plugin
starts an archive job through its REST API from inside the process, and 1.11/1.12 are untested, so
the glue leaves the guard off there rather than risk taking Orthanc down.
"""

import json
import logging
import threading
import time

from ..port.index import OrthancApi, OrthancCallError
from .rest import Request, send_json_error

log = logging.getLogger("orthanc_objstore")

ROUTE = "/(patients|studies|series)/([^/]+)/(archive|media)"


class ReadFailures:
    """Recent failed reads, by attachment uuid (fed by the storage callbacks)."""

    def __init__(self, keep_seconds=3600.0):
        self.keep_seconds = keep_seconds
        self._failures: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, uuid: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures[uuid] = now
            if len(self._failures) > 10000:
                self._failures = {u: t for u, t in self._failures.items() if now - t < self.keep_seconds}

    def since(self, started: float, uuids) -> list[str]:
        with self._lock:
            return sorted(uuid for uuid in uuids if self._failures.get(uuid, -1.0) >= started)


class ArchiveGuard:
    """The REST handler of ``ROUTE`` (register with ``rest.route(guard, "GET", "POST")``)."""

    def __init__(self, api: OrthancApi, failures: ReadFailures, poll_seconds=0.05, timeout=3600.0):
        self.api = api
        self.failures = failures
        self.poll_seconds = poll_seconds
        self.timeout = timeout

    def __call__(self, output, request: Request):
        level, resource, kind = request.groups
        options = {}
        if request.method == "POST":
            try:
                options = json.loads(request.body or b"{}")
            except ValueError:
                return send_json_error(output, 400, "the body must be a JSON object")
            if not isinstance(options, dict):
                return send_json_error(output, 400, "the body must be a JSON object")
        elif "transcode" in request.get:
            options["Transcode"] = request.get["transcode"]
        if kind == "media" and "extended" in request.get:
            options["Extended"] = True
        asynchronous = options.pop("Asynchronous", None) is True or options.pop("Synchronous", None) is False
        body = json.dumps({**options, "Resources": [resource], "Asynchronous": True})
        with self.api.handler_slot():
            if asynchronous:
                return _answer(output, self.api.post_json(f"/tools/create-{kind}", body))
            instances = self.api.get_json(f"/{level}/{resource}/instances")
            if instances is None:
                return send_json_error(output, 404, f"unknown {level} {resource!r}")
            uuids = {instance["FileUuid"] for instance in instances}
            started = time.monotonic()
            job = self.api.post_json(f"/tools/create-{kind}", body)["ID"]
            status = self._wait(job)
            if status["State"] != "Success":
                return send_json_error(output, 500, f"the {kind} job failed: {status.get('ErrorDescription')}",
                                       Job=job)
            unreadable = self.failures.since(started, uuids)
            if unreadable:
                log.error("%s of %s %s: %d file(s) could not be read from the storage; no partial archive served",
                          kind, level, resource, len(unreadable))
                return send_json_error(output, 503, f"{len(unreadable)} file(s) of this {kind} could not be read "
                                       "from the storage; no partial archive is served, retry when the storage "
                                       "is back", Attachments=unreadable)
            archive = self.api.get_bytes(f"/jobs/{job}/archive")
        output.SetHttpHeader("Content-Disposition", f'attachment; filename="{resource}.zip"')
        output.AnswerBuffer(archive, "application/zip")

    def _wait(self, job: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            status = self.api.get_json(f"/jobs/{job}")
            if status is None:
                raise OrthancCallError(500, f"the job {job} disappeared from Orthanc's job history")
            if status["State"] in ("Success", "Failure"):
                return status
            time.sleep(self.poll_seconds)
        raise OrthancCallError(504, f"the job {job} did not finish within {self.timeout:.0f} s")


def _answer(output, value):
    output.AnswerBuffer(json.dumps(value, indent=2) + "\n", "application/json")
