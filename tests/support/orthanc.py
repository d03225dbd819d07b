"""A real Orthanc process (Debian's /usr/sbin/Orthanc) loading the plugin, driven over HTTP."""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

from .servers import free_port, require, stop_process, venv_bin, wait_http

ORTHANC = "/usr/sbin/Orthanc"
PYTHON_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPython.so"


def plugin_path() -> str:
    """Exactly what an administrator does: ask the installed command."""
    command = venv_bin("orthanc-objstore")
    require(command is not None, "the orthanc-objstore command is not installed in this venv (pip install .)")
    return subprocess.run([command, "plugin-path"], check=True, capture_output=True, text=True).stdout.strip()


class HttpError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class Orthanc:
    def __init__(self, workdir, settings: dict, dicom=False, env: dict | None = None):
        """``env``: variables added to the Orthanc process's environment (the plugin runs inside it)."""
        require(os.path.exists(ORTHANC) and os.path.exists(PYTHON_PLUGIN),
                "Debian's orthanc and orthanc-python packages are not installed")
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.http_port = free_port()
        self.dicom_port = free_port() if dicom else None
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config = {
            "Name": "objstore-test",
            "StorageDirectory": os.path.join(self.workdir, "storage"),
            "IndexDirectory": os.path.join(self.workdir, "index"),
            "HttpPort": self.http_port,
            "DicomServerEnabled": dicom,
            "DicomPort": self.dicom_port or 4242,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [PYTHON_PLUGIN],
            "PythonScript": plugin_path(),
            "MaximumStorageCacheSize": 0,
            "StorageCompression": False,
        }
        self.config.update(settings)
        self.env = dict(env or {})
        self.log_path = os.path.join(self.workdir, "orthanc.log")
        self.process = None

    def start(self, expect_failure=False, timeout=60):
        config_path = os.path.join(self.workdir, "orthanc.json")
        with open(config_path, "w") as file:
            json.dump(self.config, file, indent=2)
        log = open(self.log_path, "a")
        self.process = subprocess.Popen([ORTHANC, "--verbose", config_path], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.workdir, start_new_session=True,
                                        env={**os.environ, **self.env} if self.env else None)
        log.close()
        if expect_failure:
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                raise AssertionError("Orthanc started although it was expected to refuse")
        try:
            wait_http(f"{self.url}/system", self.process, timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- Orthanc log (tail) ---\n{self.log_tail()}") from None
        return self

    def stop(self):
        if self.process is not None:
            stop_process(self.process, timeout=30)
            self.process = None

    def kill(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as file:
            return file.read()

    def log_tail(self, lines=60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def request(self, method, path, body=None, headers=None, timeout=120):
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            raise HttpError(exc.code, exc.read()) from None

    def get(self, path, **kwargs) -> bytes:
        return self.request("GET", path, **kwargs)[1]

    def get_json(self, path):
        return json.loads(self.get(path))

    def post(self, path, body=None, **kwargs) -> bytes:
        return self.request("POST", path, body, **kwargs)[1]

    def post_json(self, path, body=None):
        return json.loads(self.post(path, body))

    def put(self, path, body=None):
        return self.request("PUT", path, body)[1]

    def delete(self, path):
        return self.request("DELETE", path)[1]

    def upload(self, dicom: bytes) -> dict:
        return self.post_json("/instances", dicom)


def storescu(port: int, *files) -> subprocess.CompletedProcess:
    executable = shutil.which("storescu")
    require(executable is not None, "DCMTK's storescu is not installed (apt-get install dcmtk)")
    return subprocess.run([executable, "-aec", "ORTHANC", "127.0.0.1", str(port), *files],
                          capture_output=True, text=True, timeout=120)


def wait_for(predicate, timeout=20.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
