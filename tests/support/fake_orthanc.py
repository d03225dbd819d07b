"""Doubles of Orthanc for unit tests: a dict-backed ``OrthancApi`` and a REST output that records the answer."""

import contextlib
import json
import threading

from orthanc_objstore.port.index import OrthancCallError


class FakeOrthancApi:
    """``index.OrthancApi`` over a dict ``{uri: JSON value}``; a missing uri answers 404 (None)."""

    def __init__(self, answers=None, handler_slots=4):
        self.answers = dict(answers or {})
        self.posts = []  # (uri, body) of every POST
        self.calls = []  # every uri asked for
        self.deletes = []  # the uri of every DELETE
        self.down = False  # True: every call fails as when Orthanc is unreachable
        self._slots = threading.BoundedSemaphore(handler_slots)

    def get_json(self, uri):
        self._call(uri)
        return self.answers.get(uri)

    def post_json(self, uri, body):
        self._call(uri)
        self.posts.append((uri, body))
        if uri not in self.answers:
            raise OrthancCallError(404, f"{uri}: HTTP 404")
        return self.answers[uri]

    def get_bytes(self, uri):
        self._call(uri)
        if uri not in self.answers:
            raise OrthancCallError(404, f"{uri}: HTTP 404")
        return self.answers[uri]

    def delete(self, uri):
        self._call(uri)
        self.deletes.append(uri)
        self.answers.pop(uri, None)

    @contextlib.contextmanager
    def handler_slot(self):
        if not self._slots.acquire(blocking=False):
            raise OrthancCallError(503, "busy")
        try:
            yield
        finally:
            self._slots.release()

    def _call(self, uri):
        self.calls.append(uri)
        if self.down:
            raise OrthancCallError(503, f"{uri}: connection refused")


class RecordingOutput:
    """What a REST handler answered: ``status`` (200 for AnswerBuffer), ``body``, ``mime``, ``headers``."""

    def __init__(self):
        self.status = None
        self.body = None
        self.mime = None
        self.headers = {}
        self.allowed = None

    def AnswerBuffer(self, data, mime):  # noqa: N802 - Orthanc's names
        self._answer(200, data)
        self.mime = mime

    def SendHttpStatus(self, status, body, size=None):  # noqa: N802
        self._answer(status, body)

    def SendMethodNotAllowed(self, allowed):  # noqa: N802
        self._answer(405, b"")
        self.allowed = allowed

    def SetHttpHeader(self, name, value):  # noqa: N802
        self.headers[name] = value

    def _answer(self, status, body):
        assert self.status is None, "answered twice"
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body

    def json(self):
        return json.loads(self.body)


def call(callback, uri, method="POST", body=b"", groups=(), get=None) -> "RecordingOutput":
    """Calls a REST route's ``callback`` as Orthanc's Python plugin does (``get`` for GET, ``body`` otherwise);
    the answer is in the returned ``RecordingOutput``."""
    output = RecordingOutput()
    request = {"method": method, "groups": groups, "headers": {}}
    if method == "GET":
        request["get"] = get or {}
    else:
        request["body"] = body
    callback(output, uri, **request)
    return output
