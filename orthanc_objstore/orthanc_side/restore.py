"""``POST /objstore/restore``: restores every attachment of some resources from a cold storage class (SPEC COLD-1).

Body: ``{"Resources": [ids at any level], "Days": 7, "Tier": "Standard", "Asynchronous": false}``.
``Days`` and ``Tier`` default to the RestoreDays and RestoreTier options; ``Tier`` is one of the
provider's restore speeds (S3: Standard, Bulk, Expedited; Azure: Standard, High). Synchronous (the
default): the restores are asked for and the answer counts what was found (``jobs.restore.restore_now``);
it does not wait for them to finish. Asynchronous: a job under ``/jobs`` that ends when every file is
readable (``jobs.restore.RestoreManager``). Orthanc-free: the index through the port.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass

from ..areas.contract import Area
from ..jobs.restore import RestoreManager, restore_now
from ..jobs.steps import resolve
from ..port.index import OrthancApi, RestIndex
from .cold import RestorePolicy
from .rest import Request, answer_json, route, send_json_error

ROUTE = "/objstore/restore"
_FIELDS = ("Resources", "Days", "Tier", "Asynchronous")


class BadRestoreRequest(ValueError):
    """A body that cannot be accepted; the message says what is wrong and what is allowed."""


@dataclass(frozen=True)
class RestoreRequest:
    resources: list
    days: int
    tier: str
    asynchronous: bool


def parse_restore_request(body: bytes, policy: RestorePolicy, tiers: tuple[str, ...]) -> RestoreRequest:
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRestoreRequest('the body is not JSON; expected an object such as {"Resources": ["<id>"], '
                                '"Days": 7, "Tier": "Standard"}') from None
    if not isinstance(request, dict):
        raise BadRestoreRequest(f"the body must be a JSON object, not {type(request).__name__}")
    unknown = sorted(set(request) - set(_FIELDS))
    if unknown:
        raise BadRestoreRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    resources = request.get("Resources")
    if not isinstance(resources, list) or not resources or not all(isinstance(r, str) and r for r in resources):
        raise BadRestoreRequest('"Resources" must be a non-empty array of patient, study, series or instance ids')
    days = request.get("Days", policy.days)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
        raise BadRestoreRequest(f'"Days" must be an integer from 1 to 36500, not {json.dumps(days)}')
    tier = request.get("Tier", policy.tier)
    if tier not in tiers:
        raise BadRestoreRequest(f'"Tier" must be one of {", ".join(tiers)} for this storage, not {json.dumps(tier)}')
    asynchronous = request.get("Asynchronous", False)
    if not isinstance(asynchronous, bool):
        raise BadRestoreRequest(f'"Asynchronous" must be true or false, not {json.dumps(asynchronous)}')
    return RestoreRequest(list(dict.fromkeys(resources)), days, tier, asynchronous)


class RestoreRoutes:
    """The handler of ``POST /objstore/restore``; ``routes()`` gives the pair to register."""

    def __init__(self, api: OrthancApi, area: Area, manager: RestoreManager, policy: RestorePolicy,
                 on_step: Callable[[str], None] = lambda outcome: None):
        self.api = api
        self.area = area
        self.manager = manager
        self.policy = policy
        self.on_step = on_step
        self.index = RestIndex(api)

    def routes(self) -> list[tuple[str, Callable[..., None]]]:
        return [(ROUTE, route(self.restore, "POST"))]

    def restore(self, output, request: Request) -> None:
        tiers = self.area.restore_tiers
        if not tiers:
            send_json_error(output, 400, "this storage has no storage class that needs a restore (S3 GLACIER or "
                            "DEEP_ARCHIVE, Azure Archive): every file is readable as it is")
            return
        try:
            parsed = parse_restore_request(request.body, self.policy, tiers)
        except BadRestoreRequest as exc:
            send_json_error(output, 400, str(exc))
            return
        with self.api.handler_slot():
            try:
                groups = resolve(self.index, parsed.resources)
            except LookupError as exc:
                unknown = exc.args[0]
                send_json_error(output, 404, f"unknown resource(s): {', '.join(map(repr, unknown))}; expected ids "
                                "of patients, studies, series or instances in this Orthanc", UnknownResources=unknown)
                return
            if parsed.asynchronous:
                job = self.manager.submit(groups, parsed.days, parsed.tier)
                answer_json(output, {"ID": job.id, "Path": f"/jobs/{job.id}"})
                return
            answer_json(output, restore_now(self.index, self.area, groups, parsed.days, parsed.tier, self.on_step))
