"""The port over HTTP (``loopback.LoopbackApi``) against a small local HTTP server: answers, errors, bounds, settings."""

import http.server
import json
import threading

import pytest
from support.waiting import wait_for

from orthanc_objstore.port.index import OrthancCallError
from orthanc_objstore.port.loopback import LoopbackApi, LoopbackSettings


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        self.seen = []
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def settings(self, **options):
        return LoopbackSettings(port=self.server_address[1], **options)

    def close(self):
        self.release.set()
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Orthanc

    def log_message(self, *args):
        pass

    def _answer(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization"), b""))
        if self.path == "/slow":
            self.server.release.wait(10)
        answers = {"/patients/ab": (200, {"Studies": ["cd"]}), "/slow": (200, {}),
                   "/broken": (500, {"Message": "Internal error"}), "/private": (401, {})}
        self._answer(*answers.get(self.path, (404, {"Message": "Unknown resource"})))

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        self._answer(200, {"ID": "job-1"})


@pytest.fixture
def server():
    server = Server()
    yield server
    server.close()


def test_answers_and_errors(server):
    api = LoopbackApi(server.settings())
    assert api.get_json("/patients/ab") == {"Studies": ["cd"]}
    assert api.get_json("/patients/nope") is None  # 404: unknown resource
    assert api.post_json("/tools/create-archive", '{"Resources": ["ab"]}') == {"ID": "job-1"}
    assert server.seen[-1][3] == b'{"Resources": ["ab"]}'
    with pytest.raises(OrthancCallError, match="Internal error") as broken:
        api.get_json("/broken")
    assert broken.value.status == 500
    with pytest.raises(OrthancCallError, match="RegisteredUsers") as refused:
        api.get_bytes("/private")
    assert refused.value.status == 401
    assert [auth for _, _, auth, _ in server.seen] == [None] * 5


def test_credentials_are_sent_and_never_shown(server):
    settings = LoopbackSettings.from_configuration({"HttpPort": server.server_address[1],
                                                    "RegisteredUsers": {"alice": "s3cret!"}})
    api = LoopbackApi(settings)
    api.get_json("/patients/ab")
    assert server.seen[0][2] == "Basic YWxpY2U6czNjcmV0IQ=="
    assert "s3cret" not in repr(api) and "YWxp" not in repr(settings)


def test_orthanc_unreachable_is_a_503():
    with Server() as probe:
        port = probe.server_address[1]
    probe.close()
    with pytest.raises(OrthancCallError) as unreachable:
        LoopbackApi(LoopbackSettings(port=port)).get_json("/patients/ab")
    assert unreachable.value.status == 503 and "Orthanc's own REST API" in str(unreachable.value)
    with pytest.raises(OrthancCallError, match="HttpServerEnabled") as disabled:
        LoopbackApi(LoopbackSettings(enabled=False)).get_json("/patients/ab")
    assert disabled.value.status == 503


def test_calls_and_handlers_are_bounded(server):
    api = LoopbackApi(server.settings(http_threads=4), queue_timeout=0.2)  # 4 threads: one call, one handler
    assert api.max_calls == 1
    slow = threading.Thread(target=api.get_json, args=("/slow",))
    slow.start()
    try:
        assert wait_for(lambda: any(path == "/slow" for _, path, _, _ in server.seen), timeout=10.0, interval=0.01)
        with pytest.raises(OrthancCallError, match="already running") as busy:
            api.get_json("/patients/ab")
        assert busy.value.status == 503
    finally:
        server.release.set()
        slow.join(10)
    assert api.get_json("/patients/ab") == {"Studies": ["cd"]}  # the slot is free again
    with api.handler_slot():
        with pytest.raises(OrthancCallError, match="already serving"):
            with api.handler_slot():
                pass
    with api.handler_slot():
        pass


def test_settings_from_orthancs_configuration():
    default = LoopbackSettings.from_configuration({})
    assert (default.host, default.port, default.tls, default.authorization, default.http_threads) == (
        "127.0.0.1", 8042, False, None, 50)
    custom = LoopbackSettings.from_configuration({"HttpPort": 9000, "SslEnabled": True, "HttpThreadsCount": 8,
                                                  "HttpServerEnabled": False, "HttpBindAddresses": ["10.1.2.3"]})
    assert (custom.host, custom.port, custom.tls, custom.http_threads, custom.enabled) == (
        "10.1.2.3", 9000, True, 8, False)
    assert LoopbackSettings.from_configuration({"HttpBindAddresses": ["10.1.2.3", "127.0.0.1"]}).host == "127.0.0.1"
    assert LoopbackSettings.from_configuration({"HttpPort": "x", "HttpThreadsCount": 0}).port == 8042


def test_a_call_after_several_stale_pooled_connections_succeeds_on_a_new_one(server):
    import http.client
    import socket

    api = LoopbackApi(server.settings())
    with socket.socket() as unused:  # a port nothing listens on: what a connection Orthanc closed gives
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
    api._idle = [http.client.HTTPConnection("127.0.0.1", dead_port, timeout=2) for _ in range(3)]
    assert api.get_json("/patients/ab") == {"Studies": ["cd"]}
    assert api.post_json("/instances", b"data") == {"ID": "job-1"}
