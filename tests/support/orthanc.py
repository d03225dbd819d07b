"""A real Orthanc process loading the plugin, driven over HTTP: the host's Debian 12 Orthanc 1.10.1, or
the newest Orthanc (1.13) run in the Debian forky chroot that scripts/newest-orthanc.sh builds.

In the chroot, Orthanc sees the chroot's files only: the work folder is made inside it, every path
in the configuration is a chroot path (``Orthanc.orthanc_path``), and the plugin is the one installed
in the chroot's own venv (Python 3.14). Its network is the host's, so the emulators on 127.0.0.1
are reachable from both.
"""

import base64
import http.client
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request

from .servers import free_port, require, stop_process, venv_bin, wait_http
from .waiting import in_background, wait_for  # noqa: F401 - the e2e tests import them from here too
from .watchdog import OrthancFrozen, Watchdog

ORTHANC = "/usr/sbin/Orthanc"
PYTHON_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPython.so"
# Debian's orthanc-dicomweb (1.7 on the host, 1.24 in the chroot; scripts/setup.sh test installs both)
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
DICOMWEB_SETTINGS = {"DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}

HOST_VERSION = "1.10.1"      # Debian 12's orthanc + orthanc-python 4.0 (v1 storage API)
NEWEST_VERSION = "1.13"      # Debian forky's orthanc + orthanc-python 7.1 (v3 storage API), in the chroot
# What each label promises, checked against the running Orthanc at every start (``check_versions``): the
# core's /system Version and the Python plugin's /plugins/python Version, each equal to the release given
# or one of its point releases ("1.13" takes 1.13.0, 1.13.1; "7" takes 7.1, 7.2).
PROMISED = {HOST_VERSION: ("1.10.1", "4.0"), NEWEST_VERSION: ("1.13", "7")}
# ORTHANC_OBJSTORE_TEST_VERSIONS=1.10.1 (comma-separated) narrows the end-to-end tests to some versions, e.g.
# in a second checkout that must not reinstall the plugin in the shared 1.13 chroot. CI runs both.
VERSIONS = tuple(version.strip() for version in os.environ.get(
    "ORTHANC_OBJSTORE_TEST_VERSIONS", f"{HOST_VERSION},{NEWEST_VERSION}").split(",") if version.strip())
# Known gap on 1.13, for @pytest.mark.xfail_on_newest: the archive guard is off there, because Orthanc 1.13.0
# crashes (SIGSEGV) when a plugin starts an archive job through orthanc.RestApiPost; the core's archive job
# then skips unreadable files and answers 200 (see ArchiveGuard in orthanc_glue.py).
ARCHIVE_GUARD_OFF = ("archive guard off on Orthanc >= 1.11: the core serves archives with unreadable files "
                     "skipped")
FORKY_ROOT = os.environ.get("ORTHANC_OBJSTORE_FORKY_ROOT", "/var/cache/orthanc-objstore/forky")
FORKY_VENV = "/opt/orthanc-objstore"


def plugin_path() -> str:
    """Exactly what an administrator does: ask the installed command."""
    command = venv_bin("orthanc-objstore")
    require(command is not None, "the orthanc-objstore command is not installed in this venv (pip install .)")
    return subprocess.run([command, "plugin-path"], check=True, capture_output=True, text=True).stdout.strip()


_forky_plugin = None


def forky_plugin_path() -> str:
    """The plugin file of the chroot's venv, after checking it holds the same code as this checkout's venv."""
    global _forky_plugin
    if _forky_plugin is None:
        require(os.path.exists(os.path.join(FORKY_ROOT, "usr/sbin/Orthanc")),
                f"no Orthanc 1.13 chroot in {FORKY_ROOT} (bash scripts/newest-orthanc.sh)")
        command = os.path.join(FORKY_ROOT, FORKY_VENV.lstrip("/"), "bin/orthanc-objstore")
        require(os.path.exists(command), "the plugin is not installed in the chroot (bash scripts/newest-orthanc.sh)")
        path = subprocess.run(["chroot", FORKY_ROOT, FORKY_VENV + "/bin/orthanc-objstore", "plugin-path"],
                              check=True, capture_output=True, text=True).stdout.strip()
        _check_same_code(os.path.dirname(plugin_path()), os.path.join(FORKY_ROOT, os.path.dirname(path).lstrip("/")))
        _forky_plugin = path
    return _forky_plugin


def _check_same_code(host_package, chroot_package):
    """Both Orthancs must test the same code: the chroot's copy is refreshed by scripts/newest-orthanc.sh."""
    for folder, _, names in os.walk(host_package):
        for name in names:
            if not name.endswith(".py"):
                continue
            mine = os.path.join(folder, name)
            theirs = os.path.join(chroot_package, os.path.relpath(mine, host_package))
            if not os.path.exists(theirs) or _read(mine) != _read(theirs):
                raise AssertionError(f"the plugin installed in the chroot differs from .venv's "
                                     f"({os.path.relpath(mine, host_package)}): run bash scripts/newest-orthanc.sh install")


def _same_release(found, release: str) -> bool:
    """'1.13.0' is of release '1.13', and '1.10.1' of '1.10.1'; 'mainline', '1.130' and None are not."""
    return isinstance(found, str) and (found == release or found.startswith(release + "."))


def _read(path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


class HttpError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class Orthanc:
    """One Orthanc process. ``version`` is HOST_VERSION (the host's) or NEWEST_VERSION (in the chroot);
    ``env`` adds environment variables (e.g. ORTHANC_OBJSTORE_STORAGE_API)."""

    def __init__(self, workdir, settings: dict, dicom=False, version=HOST_VERSION, env=None):
        if version == NEWEST_VERSION:
            plugin = forky_plugin_path()
            # the same relative folder, inside the chroot (removed by cleanup())
            self.orthanc_workdir = os.path.join("/tmp/objstore-tests", f"{os.getpid()}-{os.path.basename(os.path.dirname(workdir))}",
                                                os.path.basename(workdir))
            self.root = FORKY_ROOT
        else:
            require(os.path.exists(ORTHANC) and os.path.exists(PYTHON_PLUGIN),
                    "Debian's orthanc and orthanc-python packages are not installed")
            plugin = plugin_path()
            self.orthanc_workdir = str(workdir)
            self.root = None
        self.version = version
        self.test_folder = str(workdir)  # on the host, in the test's tmp_path (the watchdog's dumps go here)
        self.watchdog = None  # watches from a successful start() to stop()/kill()
        self.env = dict(env or {})
        self.workdir = self.host_path(self.orthanc_workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.http_port = free_port()
        self.dicom_port = free_port() if dicom else None
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config = {
            "Name": "objstore-test",
            "StorageDirectory": os.path.join(self.orthanc_workdir, "storage"),
            "IndexDirectory": os.path.join(self.orthanc_workdir, "index"),
            "HttpPort": self.http_port,
            "DicomServerEnabled": dicom,
            "DicomPort": self.dicom_port or 4242,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [PYTHON_PLUGIN],
            "PythonScript": plugin,
            "MaximumStorageCacheSize": 0,
            "StorageCompression": False,
        }
        if version == NEWEST_VERSION:
            self.config["HttpBindAddresses"] = ["127.0.0.1"]  # since 1.12.10; unknown to 1.10.1
        self.config.update(settings)
        self.log_path = os.path.join(self.workdir, "orthanc.log")
        self.process = None

    def host_path(self, orthanc_path: str) -> str:
        """Where a path of Orthanc's configuration is on the host (differs in the chroot)."""
        return os.path.join(self.root, orthanc_path.lstrip("/")) if self.root else orthanc_path

    def write_file(self, name: str, data: bytes) -> str:
        """Writes a file into the work folder; returns its path as Orthanc sees it (for the configuration)."""
        with open(os.path.join(self.workdir, name), "wb") as file:
            file.write(data)
        return os.path.join(self.orthanc_workdir, name)

    @property
    def storage_api(self) -> str:
        """"v3" or "v1": what the plugin says it registered, from its start-up line in Orthanc's log."""
        lines = [line for line in self.log().splitlines() if ": storage area in " in line]
        return "v3" if lines and "through RegisterStorageArea3" in lines[-1] else "v1"

    def write_configuration(self, files: dict[str, str]) -> str:
        """Writes configuration files (name → text) into a folder of their own; returns what to give Orthanc
        as its argument, as Orthanc sees it: the one file, or the folder of several."""
        folder = os.path.join(self.workdir, "configuration")
        os.makedirs(folder)
        for name, text in files.items():
            with open(os.path.join(folder, name), "w", encoding="utf-8") as file:
                file.write(text)
        name = next(iter(files)) if len(files) == 1 else ""
        return os.path.join(self.orthanc_workdir, "configuration", name).rstrip("/")

    def start(self, expect_failure=False, timeout=60, configuration=None):
        """``configuration`` is Orthanc's argument (from write_configuration); by default orthanc.json
        written from ``self.config``."""
        if configuration is None:
            with open(os.path.join(self.workdir, "orthanc.json"), "w") as file:
                json.dump(self.config, file, indent=2)
            configuration = os.path.join(self.orthanc_workdir, "orthanc.json")
        command = [ORTHANC, "--verbose", configuration]
        if self.root:
            command = ["chroot", self.root, *command]  # chroot execs Orthanc: the PID is Orthanc's own
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                        start_new_session=True, env={**os.environ, **self.env})
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
        try:
            self.check_versions()
        except AssertionError:
            self.stop()
            raise
        self.watchdog = Watchdog(self.url, self.process, self.version, self.test_folder, root=self.root).start()
        return self

    def credentials(self) -> dict:
        """The Authorization header of the first registered user when the configuration turns authentication
        on (as a test of it does), else none."""
        users = self.config.get("RegisteredUsers") or {}
        if not self.config.get("AuthenticationEnabled") or not users:
            return {}
        user, password = next(iter(users.items()))
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    def check_versions(self):
        """The Orthanc that answers is the one its label names (PROMISED): a label only says what was meant."""
        core, plugin = PROMISED[self.version]
        where = f"in the chroot {self.root} (scripts/newest-orthanc.sh)" if self.root else f"on the host ({ORTHANC})"
        found = self.get_json("/system", headers=self.credentials()).get("Version")
        if not _same_release(found, core):
            raise AssertionError(f"the Orthanc {where} reports version {found!r}, but the tests labelled it "
                                 f"{self.version} and are written for Orthanc {core}.x; rebuild or update that "
                                 "Orthanc, or update HOST_VERSION/NEWEST_VERSION and PROMISED in "
                                 "tests/support/orthanc.py")
        try:
            found = self.get_json("/plugins/python", headers=self.credentials()).get("Version")
        except HttpError as exc:
            if exc.status != 404:
                raise
            return  # this Orthanc does not list its plugins' versions: nothing to compare
        if not _same_release(found, plugin):
            raise AssertionError(f"the Orthanc {where} runs the Python plugin version {found!r}, but the tests "
                                 f"labelled it {self.version} and are written for the Python plugin {plugin}.x; "
                                 "update that Orthanc's orthanc-python, or PROMISED in tests/support/orthanc.py")

    def _stop_watching(self) -> bool:
        """Stops the watchdog (a normal stop is no freeze); True if it had found this Orthanc frozen."""
        if self.watchdog is None:
            return False
        self.watchdog.stop()
        return self.watchdog.tripped

    def stop(self):
        frozen = self._stop_watching()
        if self.process is not None:
            stop_process(self.process, timeout=5 if frozen else 30)  # a frozen Orthanc ignores SIGTERM
            self.process = None

    def cleanup(self):
        """Removes a work folder made inside the chroot (the host's lives in pytest's tmp_path)."""
        if self.root:
            shutil.rmtree(os.path.dirname(self.workdir), ignore_errors=True)

    def kill(self):
        self._stop_watching()
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
        """(status, body); HttpError for an error status; OrthancFrozen (with the watchdog's verdict and
        at once, without waiting for ``timeout``) when the watchdog finds this Orthanc frozen."""
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        watchdog = self.watchdog if self.process is not None else None
        if watchdog is not None and watchdog.freeze is not None:
            raise OrthancFrozen(f"{method} {path} not sent: {watchdog.freeze.verdict()}")
        sockets = []
        opener = urllib.request.build_opener(_TrackedHandler(watchdog, sockets))
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            raise HttpError(exc.code, exc.read()) from None
        except (OSError, http.client.HTTPException) as exc:
            if watchdog is None:
                raise
            if watchdog.freeze is not None:
                raise OrthancFrozen(f"{method} {path} aborted: {watchdog.freeze.verdict()}") from exc
            if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
                raise TimeoutError(f"no answer to {method} {path} within {timeout} s; watchdog: "
                                   f"{watchdog.status()}") from exc
            raise
        finally:
            for sock in sockets:
                if watchdog is not None:
                    watchdog.untrack(sock)

    def get(self, path, **kwargs) -> bytes:
        return self.request("GET", path, **kwargs)[1]

    def get_json(self, path, **kwargs):
        return json.loads(self.get(path, **kwargs))

    def post(self, path, body=None, **kwargs) -> bytes:
        return self.request("POST", path, body, **kwargs)[1]

    def post_json(self, path, body=None):
        return json.loads(self.post(path, body))

    def put(self, path, body=None):
        return self.request("PUT", path, body)[1]

    def delete(self, path, drained=True):
        """DELETE ``path``; with ``drained``, also waits (up to 30 s) until the plugin's deferred deletions
        have sent what they queued, or are waiting to retry it (the store is down), so that a test looking
        at the bucket next sees the result. ``drained=False``: only Orthanc's answer (what a user sees)."""
        answer = self.request("DELETE", path)[1]
        if drained:
            self.wait_for_deletions()
        return answer

    def deletions(self) -> dict | None:
        """``GET /objstore/status``'s ``DelayedDeletion`` part; None when the plugin has no such route."""
        try:
            return json.loads(self.get("/objstore/status"))["DelayedDeletion"]
        except HttpError:
            return None

    def wait_for_deletions(self, timeout=30.0) -> bool:
        """True once nothing queued is waiting to be sent (deleted, or waiting to retry after a failure)."""
        def idle():
            status = self.deletions()
            return (status is None or not status.get("Enabled")
                    or status["Pending"] == status["WaitingForRetry"] and not status["InFlight"])
        return bool(wait_for(idle, timeout=timeout, interval=0.02))

    def upload(self, dicom: bytes) -> dict:
        return self.post_json("/instances", dicom)


class _TrackedConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket the watchdog can shut down (the waiting request then ends at once)."""

    def __init__(self, *args, watchdog=None, sockets=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._watchdog = watchdog
        self._sockets = sockets

    def connect(self):
        super().connect()
        self._sockets.append(self.sock)
        if self._watchdog is not None:
            self._watchdog.track(self.sock)


class _TrackedHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog, sockets):
        super().__init__()
        self._watchdog = watchdog
        self._sockets = sockets

    def http_open(self, req):
        return self.do_open(lambda *args, **kwargs: _TrackedConnection(
            *args, watchdog=self._watchdog, sockets=self._sockets, **kwargs), req)


def storescu(port: int, *files) -> subprocess.CompletedProcess:
    executable = shutil.which("storescu")
    require(executable is not None, "DCMTK's storescu is not installed (apt-get install dcmtk)")
    return subprocess.run([executable, "-aec", "ORTHANC", "127.0.0.1", str(port), *files],
                          capture_output=True, text=True, timeout=120)
