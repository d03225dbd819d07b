"""``POST /objstore/adopt``, ``/objstore/adopt-instance`` and ``/objstore/abandon-instance`` (``jobs.adopt``).

Bodies:
- adopt: ``{"Prefix": "lake/", "TakeOwnership": false, "Asynchronous": false}`` -> ``{"Adopted": n,
  "AlreadyStored": m, "Abandoned": k, "Failed": [{"Key", "Error"}]}``;
- adopt-instance: ``{"Key": "...", "TakeOwnership": false}`` -> ``{"Status", "InstanceId", "AttachmentUuid", "Error"}``;
- abandon-instance: ``{"Key": "..."}`` -> the same fields.
With ``"Asynchronous": true`` the adoption is a job (``jobs.adopt_jobs``) and the answer ``{"ID", "Path"}``
comes at once; the job is listed under ``/jobs``. Each answers 200 with the outcome (``"Status": "Failure"`` and
its ``Error`` included); 400 for a body that cannot be accepted. Orthanc-free: Orthanc through the port; each
handler takes one of the port's handler slots.
"""

import json
from collections.abc import Callable

from ..jobs.adopt import Adopter
from ..jobs.adopt_jobs import AdoptManager
from ..port.index import OrthancApi
from .rest import Request, answer_json, route, send_json_error

ADOPT, ADOPT_INSTANCE, ABANDON_INSTANCE = "/objstore/adopt", "/objstore/adopt-instance", "/objstore/abandon-instance"


class BadAdoptRequest(ValueError):
    """A body that cannot be accepted; the message says what is wrong and what is allowed."""


def parse_body(body: bytes, fields: dict[str, type], required: str, example: str) -> dict:
    """The body's fields (``fields``: name -> bool or str), with False/"" for the optional ones left out."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadAdoptRequest(f"the body is not JSON; expected an object such as {example}") from None
    if not isinstance(request, dict):
        raise BadAdoptRequest(f"the body must be a JSON object such as {example}, not {type(request).__name__}")
    unknown = sorted(set(request) - set(fields))
    if unknown:
        raise BadAdoptRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    if required not in request:
        raise BadAdoptRequest(f'"{required}" is missing; expected an object such as {example}')
    values = {}
    for name, kind in fields.items():
        value = request.get(name, kind())
        if kind is bool and not isinstance(value, bool):
            raise BadAdoptRequest(f'"{name}" must be true or false, not {json.dumps(value)}')
        if kind is str and not isinstance(value, str):
            raise BadAdoptRequest(f'"{name}" must be a string (an object key), not {json.dumps(value)}')
        values[name] = value
    return values


class AdoptRoutes:
    """The three routes; ``adopter`` is None when the storage cannot adopt (a provider that does not list);
    ``jobs`` runs the asynchronous adoptions."""

    def __init__(self, api: OrthancApi, adopter: Adopter | None, jobs: AdoptManager | None = None):
        self.api = api
        self.adopter = adopter
        self.jobs = jobs

    def routes(self) -> list[tuple[str, Callable[..., None]]]:
        return [(ADOPT, route(self.adopt, "POST")), (ADOPT_INSTANCE, route(self.adopt_instance, "POST")),
                (ABANDON_INSTANCE, route(self.abandon_instance, "POST"))]

    def adopt(self, output, request: Request) -> None:
        values = self._parse(output, request, {"Prefix": str, "TakeOwnership": bool, "Asynchronous": bool},
                             "Prefix", '{"Prefix": "lake/", "TakeOwnership": false}')
        if values is None or self.adopter is None:
            return
        if values["Asynchronous"]:
            if self.jobs is None:
                send_json_error(output, 400, '"Asynchronous": true is not available on this Orthanc: adopt '
                                "synchronously (false)")
                return
            job = self.jobs.submit(values["Prefix"], values["TakeOwnership"])
            answer_json(output, {"ID": job.id, "Path": f"/jobs/{job.id}"})
            return
        with self.api.handler_slot():
            answer_json(output, self.adopter.adopt_prefix(values["Prefix"], values["TakeOwnership"]).answer())

    def adopt_instance(self, output, request: Request) -> None:
        values = self._parse(output, request, {"Key": str, "TakeOwnership": bool}, "Key",
                             '{"Key": "lake/file.dcm", "TakeOwnership": false}')
        if values is None or self.adopter is None:
            return
        with self.api.handler_slot():
            answer_json(output, self.adopter.adopt_instance(values["Key"], values["TakeOwnership"]).answer())

    def abandon_instance(self, output, request: Request) -> None:
        values = self._parse(output, request, {"Key": str}, "Key", '{"Key": "lake/file.dcm"}')
        if values is None or self.adopter is None:
            return
        with self.api.handler_slot():
            answer_json(output, self.adopter.abandon_instance(values["Key"]).answer())

    def _parse(self, output, request: Request, fields, required, example) -> dict | None:
        if self.adopter is None:
            send_json_error(output, 400, "this storage cannot adopt objects: its provider cannot list them (adoption "
                            "works on AwsS3Storage, AzureBlobStorage and GoogleCloudStorage)")
            return None
        try:
            values = parse_body(request.body, fields, required, example)
        except BadAdoptRequest as exc:
            send_json_error(output, 400, str(exc))
            return None
        if required == "Key" and not values["Key"]:
            send_json_error(output, 400, '"Key" must be the non-empty key of an object in the storage')
            return None
        return values
