"""The ``OrthancApi`` port over Orthanc's own HTTP server on the loopback interface (no GIL held while it waits).

Why HTTP to ourselves: Python plugin 4.0 (Debian 12) keeps the GIL during every ``orthanc.*`` call,
and a call that waits on Orthanc's index with the GIL held deadlocks with a delete whose storage
callback waits for the GIL (see ``index``). Over a socket, the wait is I/O: the GIL is free, and
the callback runs.

What it takes from Orthanc's configuration (``LoopbackSettings.from_configuration``): ``HttpPort``,
``SslEnabled``, ``HttpBindAddresses`` (1.12.10+), ``RegisteredUsers`` (the first user's credentials are
sent when there are users), ``HttpThreadsCount``, ``HttpServerEnabled``, ``HttpTimeout``.

Bounds: a call made from a REST handler holds one of Orthanc's HTTP threads while it waits for
another. At most ``HttpThreadsCount // 4`` calls run at once (``max_calls``); a caller that cannot
start within ``queue_timeout`` gets ``OrthancCallError(503)``. REST handlers that call the port take
one of ``max_calls`` handler slots first (``handler_slot``), without waiting: so the plugin never
holds more than half of Orthanc's HTTP threads, and Orthanc always has threads left to answer.
"""

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .index import OrthancCallError

_MAX_IDLE_CONNECTIONS = 8


@dataclass(frozen=True)
class LoopbackSettings:
    enabled: bool = True  # HttpServerEnabled
    host: str = "127.0.0.1"
    port: int = 8042
    tls: bool = False
    authorization: str | None = None  # the Authorization header's value (a secret: never logged)
    http_threads: int = 50
    timeout: float = 60.0

    def __repr__(self) -> str:  # no credentials in logs
        scheme = "https" if self.tls else "http"
        return f"LoopbackSettings({scheme}://{self.host}:{self.port}, threads={self.http_threads})"

    @classmethod
    def from_configuration(cls, configuration: dict) -> "LoopbackSettings":
        def number(name, default, minimum):
            value = configuration.get(name, default)
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= minimum else default

        users = configuration.get("RegisteredUsers")
        authorization = None
        if isinstance(users, dict) and users:
            user, password = next(iter(users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            authorization = f"Basic {token}"
        host = "127.0.0.1"
        addresses = configuration.get("HttpBindAddresses")
        if isinstance(addresses, list) and addresses and all(isinstance(a, str) for a in addresses):
            loopback = [a for a in addresses if a in ("127.0.0.1", "localhost", "0.0.0.0", "::", "::1")]
            host = "::1" if loopback == ["::1"] else "127.0.0.1" if loopback else addresses[0]
        return cls(enabled=configuration.get("HttpServerEnabled", True) is not False, host=host,
                   port=number("HttpPort", 8042, 1), tls=configuration.get("SslEnabled") is True,
                   authorization=authorization, http_threads=number("HttpThreadsCount", 50, 1),
                   timeout=float(number("HttpTimeout", 60, 1)))


class LoopbackApi:
    """``index.OrthancApi`` over HTTP to this Orthanc (thread-safe; connections are pooled and reused)."""

    def __init__(self, settings: LoopbackSettings, queue_timeout: float = 30.0):
        self.settings = settings
        self.queue_timeout = queue_timeout
        self.max_calls = max(1, settings.http_threads // 4)
        self._calls = threading.BoundedSemaphore(self.max_calls)
        self._handlers = threading.BoundedSemaphore(self.max_calls)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LoopbackApi({self.settings!r})"

    # -- the port

    def get_json(self, uri: str) -> Any:
        status, body = self._request("GET", uri)
        if status == 404:
            return None
        return self._json(uri, self._check(uri, status, body))

    def post_json(self, uri: str, body: bytes | str) -> Any:
        status, answer = self._request("POST", uri, body.encode() if isinstance(body, str) else body)
        return self._json(uri, self._check(uri, status, answer))

    def get_bytes(self, uri: str) -> bytes:
        return self._check(uri, *self._request("GET", uri))

    def delete(self, uri: str) -> None:
        status, answer = self._request("DELETE", uri)
        if status != 404:
            self._check(uri, status, answer)

    @contextlib.contextmanager
    def handler_slot(self) -> Iterator[None]:
        """For a REST handler that calls the port: one of ``max_calls`` slots, or 503 at once when all are taken."""
        if not self._handlers.acquire(blocking=False):
            raise OrthancCallError(503, f"orthanc-objstore is already serving {self.max_calls} such requests "
                                   "(a quarter of HttpThreadsCount); retry later")
        try:
            yield
        finally:
            self._handlers.release()

    # -- HTTP

    def _request(self, method: str, uri: str, body: bytes | None = None) -> tuple[int, bytes]:
        if not self.settings.enabled:
            raise OrthancCallError(503, "Orthanc's HTTP server is disabled (HttpServerEnabled false); "
                                   "orthanc-objstore reaches Orthanc's index through it on this Python plugin")
        if not self._calls.acquire(timeout=self.queue_timeout):
            raise OrthancCallError(503, f"{self.max_calls} calls to Orthanc's REST API already running for "
                                   f"{self.queue_timeout:.0f} s; retry later")
        try:
            headers = {"Connection": "keep-alive"}
            if self.settings.authorization:
                headers["Authorization"] = self.settings.authorization
            if body is not None:
                headers["Content-Type"] = "application/json"
            for attempt in (1, 2):  # a pooled connection Orthanc closed meanwhile: once more on a new one
                connection, reused = self._connection(fresh=attempt == 2)  # never another stale pooled one
                try:
                    connection.request(method, uri, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()
                    if reused and attempt == 1 and not isinstance(exc, socket.timeout):
                        continue
                    raise OrthancCallError(503, f"{method} {uri} on Orthanc's own REST API "
                                           f"({self._where()}): {type(exc).__name__}: {exc}") from None
                if response.will_close:
                    connection.close()
                else:
                    self._release(connection)
                return response.status, data
            raise AssertionError("unreachable")
        finally:
            self._calls.release()

    def _connection(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A pooled idle connection (True), or a new one (False; always with ``fresh``)."""
        with self._lock:
            if self._idle and not fresh:
                return self._idle.pop(), True
        host, port, timeout = self.settings.host, self.settings.port, self.settings.timeout
        if self.settings.tls:
            # Our own server on a loopback address: its certificate names the public host, not 127.0.0.1.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=context), False
        return http.client.HTTPConnection(host, port, timeout=timeout), False

    def _release(self, connection):
        with self._lock:
            if len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def _where(self) -> str:
        return f"{'https' if self.settings.tls else 'http'}://{self.settings.host}:{self.settings.port}"

    def _check(self, uri: str, status: int, body: bytes) -> bytes:
        if 200 <= status < 300:
            return body
        if status in (401, 403):
            raise OrthancCallError(status, f"Orthanc refused orthanc-objstore's call to its REST API ({uri}: HTTP "
                                   f"{status}) at {self._where()}; with authentication on, the plugin uses the "
                                   "first user of RegisteredUsers (see the documentation, Reliability)")
        try:
            message = json.loads(body).get("Message") or json.loads(body).get("Details")
        except (ValueError, AttributeError):
            message = None
        raise OrthancCallError(status, f"{uri}: HTTP {status}" + (f" ({message})" if message else ""))

    @staticmethod
    def _json(uri: str, body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise OrthancCallError(502, f"{uri}: Orthanc's answer is not JSON") from None
