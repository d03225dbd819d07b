"""What every REST route of the plugin shares: the request, the route wrapper (method check, errors), JSON answers.

Orthanc-free: a handler gets the ``output`` object Orthanc passes (``AnswerBuffer``,
``SendHttpStatus``, ``SendMethodNotAllowed``, ``SetHttpHeader``) and a ``Request``; the glue registers
``(pattern, route(...))`` pairs with Orthanc.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..port.index import OrthancCallError

log = logging.getLogger("orthanc_objstore")


@dataclass(frozen=True)
class Request:
    """A REST request as Orthanc's Python plugin hands it over (``get`` only for GET, ``body`` for POST/PUT)."""

    method: str
    uri: str
    groups: tuple = ()
    get: dict = field(default_factory=dict)
    body: bytes = b""
    headers: dict = field(default_factory=dict)

    @classmethod
    def from_plugin(cls, uri: str, request: dict) -> "Request":
        body = request.get("body") or b""
        return cls(request.get("method", "GET"), uri, tuple(request.get("groups") or ()),
                   dict(request.get("get") or {}), body.encode() if isinstance(body, str) else bytes(body),
                   dict(request.get("headers") or {}))


Handler = Callable[[Any, Request], None]


def route(handler: Handler, *methods: str) -> Callable[..., None]:
    """The callback to register for ``handler``: 405 for other methods; a failed call to Orthanc answers a
    JSON error with Orthanc's status (503 when it was unreachable or busy); a bug a JSON 500, never the
    plugin engine's bare error."""

    def callback(output, uri, **request):
        parsed = Request.from_plugin(uri, request)
        if parsed.method not in methods:
            output.SendMethodNotAllowed(",".join(methods))
            return
        try:
            handler(output, parsed)
        except OrthancCallError as exc:
            log.warning("%s %s: %s", parsed.method, uri, exc)
            send_json_error(output, exc.status if 400 <= exc.status < 600 else 500, str(exc))
        except Exception as exc:  # noqa: BLE001
            log.exception("error in %s %s", parsed.method, uri)
            send_json_error(output, 500, f"internal error in orthanc-objstore: {type(exc).__name__}")

    return callback


def send_json_error(output, status: int, message: str, **details) -> None:
    """An error answer with a JSON body, on every Python plugin version (SendHttpStatus takes
    (code, body, size) up to 4.1 and (code, body) from 4.2 on)."""
    body = json.dumps({"HttpStatus": status, "Message": message, **details}, indent=2)
    try:
        output.SendHttpStatus(status, body, len(body.encode()))  # Python plugin <= 4.1: a str and its size
    except TypeError:
        output.SendHttpStatus(status, body.encode())


def answer_json(output, value) -> None:
    output.AnswerBuffer(json.dumps(value, indent=2) + "\n", "application/json")
