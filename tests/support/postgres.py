"""A throw-away PostgreSQL server (Debian's packages) on 127.0.0.1, for Orthanc's PostgreSQL index plugin.

The cluster lives in a fresh temporary folder, listens on a free port of 127.0.0.1 only, trusts local
connections, and is stopped by the PID of its postmaster. PostgreSQL refuses to run as root, so when
the tests run as root (CI does) the server runs as the ``postgres`` user that Debian's package creates.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

from .servers import free_port, require

INDEX_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


class PostgresServer:
    database = "orthanc"
    user = "postgres"

    def __init__(self):
        self.bin = _bin_dir()
        require(self.bin is not None, "Debian's postgresql package is not installed (apt-get install postgresql)")
        require(os.path.exists(INDEX_PLUGIN),
                "Debian's orthanc-postgresql package is not installed (apt-get install orthanc-postgresql)")
        self.run_as = None
        if os.geteuid() == 0:
            require(_has_user("postgres"), "running as root needs the postgres user of Debian's postgresql package")
            self.run_as = "postgres"
        self.folder = tempfile.mkdtemp(prefix="objstore-pg-")
        if self.run_as:
            shutil.chown(self.folder, user=self.run_as)
        self.data = os.path.join(self.folder, "data")
        self.port = free_port()
        self.log_path = os.path.join(self.folder, "postgres.log")
        self.process = None
        try:
            self._run("initdb", "-D", self.data, "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-sync")
            self._start()
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database)
        except BaseException:
            self.stop()
            raise

    def _run(self, tool, *arguments):
        result = subprocess.run([os.path.join(self.bin, tool), *arguments], user=self.run_as, cwd=self.folder,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return result.stdout

    def _start(self, timeout=60.0):
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [os.path.join(self.bin, "postgres"), "-D", self.data, "-h", "127.0.0.1", "-p", str(self.port),
             "-k", self.folder, "-c", "fsync=off", "-c", "max_connections=100"],
            user=self.run_as, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self.process.returncode}:\n{self.log_tail()}")
            ready = subprocess.run([os.path.join(self.bin, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres is not ready after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def create_database(self) -> str:
        name = f"orthanc_{uuid.uuid4().hex[:12]}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return name

    def settings(self, **options) -> dict:
        """Orthanc's configuration for the PostgreSQL index plugin, shared by several Orthancs (Lock false)."""
        section = {"EnableIndex": True, "EnableStorage": False, "Host": "127.0.0.1", "Port": self.port,
                   "Database": self.database, "Username": self.user, "Password": "", "Lock": False,
                   "EnableSsl": False, "MaximumConnectionRetries": 10, "ConnectionRetryInterval": 1}
        section.update(options)
        return {"PostgreSQL": section}

    def log_tail(self, lines=40) -> str:
        try:
            with open(self.log_path, errors="replace") as file:
                return "\n".join(file.read().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout=30.0):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: ends the sessions, then stops
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)


def _has_user(name) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
