"""Local servers for the tests: free ports on 127.0.0.1, start, wait until ready, stop by PID."""

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition, reason):
    """Skips on a developer's partial machine; fails in CI, where .ci/run installs everything."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_bin(name: str) -> str | None:
    """A console script installed next to the running interpreter (the project's venv), else on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else shutil.which(name)


def wait_http(url: str, process: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
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
    ``drop_matching`` closes the connections whose request line contains ``match``; ``slow`` forwards
    everything but waits ``delay`` seconds before forwarding each request (a slow, distant store).

    It also counts what goes through: ``requests`` (request lines) and ``bytes_from_server`` (every
    byte the server sent back, HTTP headers included); ``reset_counts()`` starts over.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.mode = "pass"
        self.cut_after = 200
        self.match = b""
        self.delay = 0.0
        self.requests = []
        self.bytes_from_server = 0
        self._count_lock = threading.Lock()
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

    def close(self):
        self._closed = True
        self._listener.close()

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
                    if source is client:
                        first_line = data.split(b"\r\n", 1)[0]
                        if first_line[:8].split(b" ")[0] in (b"GET", b"PUT", b"POST", b"DELETE", b"HEAD"):
                            self.requests.append(first_line)
                            if self.mode == "drop_matching" and self.match in first_line:
                                return
                            if self.mode == "down":
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
