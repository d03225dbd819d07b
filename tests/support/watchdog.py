"""A watchdog for every Orthanc the tests start: no answer to GET /system + /statistics for FREEZE_AFTER s: frozen.

On a freeze it captures, once, the Python stacks (py-spy, which reads the interpreter embedded in Orthanc)
and the native stacks (gdb) of the Orthanc process into a file next to the test's Orthanc folder, aborts
the requests the tests have in flight to that Orthanc (they then raise ``OrthancFrozen`` at once instead
of waiting for their timeout), and queues the freeze for conftest's report hook, which fails the test
with the dump. A frozen Orthanc must never look like a slow test.

The watchdog runs only between a successful start (``/system`` answered) and ``stop()``/``kill()``, so a
normal start, stop or restart never trips it; it stops watching when the process exits.
"""

import http.client
import os
import shutil
import socket
import subprocess
import threading
import time

from .servers import venv_bin

FREEZE_AFTER = 15.0    # seconds without any answer to GET /system: a freeze
POLL_INTERVAL = 0.5    # one poll twice a second
# GET /system alone answers on 1.10.1 while the index is deadlocked (it reads no table): /statistics reads
# the index, so an Orthanc answers a poll only when its HTTP server and its index both work
PROBES = ("/system", "/statistics")
POLL_TIMEOUT = 2.0     # each poll's own timeout
DUMP_TIMEOUT = 60.0    # each dumping tool's time limit
REPORT_LINES = 120     # lines of the dump quoted in the test's report (the file has everything)

_lock = threading.Lock()
_running: set["Watchdog"] = set()
_unreported: list["Freeze"] = []


class OrthancFrozen(AssertionError):
    """A request to an Orthanc that the watchdog found frozen (the message is the watchdog's verdict)."""


class Freeze:
    def __init__(self, version, pid, silent_for, dump_path, dump_text, missing_tools):
        self.version = version
        self.pid = pid
        self.silent_for = silent_for
        self.dump_path = dump_path
        self.dump_text = dump_text
        self.missing_tools = missing_tools

    def verdict(self) -> str:
        missing = f" (not installed: {', '.join(self.missing_tools)})" if self.missing_tools else ""
        return (f"Orthanc {self.version} (PID {self.pid}) FROZE: no answer to GET {' + '.join(PROBES)} for "
                f"{self.silent_for:.0f} s (watchdog threshold {FREEZE_AFTER:.0f} s); stack dump in "
                f"{self.dump_path}{missing}")

    def report(self) -> str:
        """The verdict, py-spy's Python stacks, and one line per native thread (its innermost functions)."""
        lines = summarize(self.dump_text).splitlines()
        excerpt = "\n".join(lines[:REPORT_LINES])
        more = f"\n[... {len(lines) - REPORT_LINES} more lines]" if len(lines) > REPORT_LINES else ""
        return f"{self.verdict()}\n{excerpt}{more}\n[the whole dump: {self.dump_path}]"


def summarize(dump: str, frames: int = 3) -> str:
    """A dump made short: py-spy's Python stacks (per thread the innermost ``frames`` and the plugin's; the --native one,
    and py-spy's own backtrace on an error, only in the file); gdb's threads grouped by their innermost named
    functions (futex internals and the unnamed frames of the stripped Orthanc left out), the biggest group last."""
    out, threads, section, depth = [], [], "", 0
    for line in dump.splitlines():
        if line.startswith("====="):
            section = "gdb" if line.startswith("===== gdb") else "native" if "--native" in line else "py-spy"
            out.append(line + (" (in the file)" if section == "native" else ""))
        elif section == "py-spy":
            if line.startswith("Thread "):
                depth = 0
                out.append(line)
            elif line.startswith("    ") and not line.startswith("     "):
                depth += 1
                if depth <= frames or "orthanc_objstore/" in line:
                    out.append(line)
                elif out[-1] != "    ...":
                    out.append("    ...")
            elif line.strip() and not line.startswith(" ") and line != "Stack backtrace:":
                out.append(line)
        elif section == "gdb" and line.startswith("Thread "):
            threads.append((line.split(" (")[0], []))
        elif section == "gdb" and line.startswith("#") and threads:
            words = line.split()
            function = (words[3] if len(words) > 3 and words[2] == "in" else words[1]).lstrip("_")
            function = function.removeprefix("GI_").lstrip("_")
            named = function != "??" and "futex" not in function and not function.endswith("_common")
            if named and len(threads[-1][1]) < 6 and function not in threads[-1][1][-1:]:
                threads[-1][1].append(function)
    groups: dict[str, list[str]] = {}
    for name, functions in threads:
        groups.setdefault(" < ".join(functions) or "(no named frame)", []).append(name.removeprefix("Thread "))
    for functions, names in sorted(groups.items(), key=lambda item: len(item[1])):
        out.append(f"{len(names)} thread(s) [{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}]: {functions}")
    return "\n".join(out)


def take_unreported(settle: bool = True) -> list[Freeze]:
    """The freezes not yet reported on a test, which the caller now owns (conftest's hook fails the test).

    With ``settle``, an Orthanc that is not answering right now is given the time to either answer again
    or trip its watchdog first, so that a test that ends while Orthanc hangs reports the freeze."""
    if settle:
        with _lock:
            running = list(_running)
        for watchdog in running:
            watchdog.settle()
    with _lock:
        taken = list(_unreported)
        _unreported.clear()
    return taken


class Watchdog:
    def __init__(self, url: str, process: subprocess.Popen, version: str, dump_folder: str, root=None,
                 freeze_after: float = FREEZE_AFTER):
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.process = process
        self.version = version
        self.dump_folder = dump_folder
        self.root = root
        self.freeze_after = freeze_after
        self.freeze: Freeze | None = None
        self.tripped = False  # once: an acknowledged freeze is not dumped again
        self.last_answer = time.monotonic()
        self._in_flight: set[socket.socket] = set()
        self._state = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"orthanc-watchdog-{process.pid}", daemon=True)

    def start(self):
        with _lock:
            _running.add(self)
        self._thread.start()
        return self

    def stop(self):
        with self._state:
            self._stopping = True
            self._state.notify_all()
        self._thread.join(3 * DUMP_TIMEOUT)
        with _lock:
            _running.discard(self)

    # --- what the tests' requests use
    def track(self, sock: socket.socket):
        with self._state:
            self._in_flight.add(sock)

    def untrack(self, sock: socket.socket):
        with self._state:
            self._in_flight.discard(sock)

    def status(self) -> str:
        if self.freeze is not None:
            return self.freeze.verdict()
        return f"Orthanc answered GET /system {time.monotonic() - self.last_answer:.1f} s ago (not frozen)"

    def wait_freeze(self, timeout: float) -> Freeze | None:
        """Waits until the watchdog has tripped and written its dump (for a test that freezes on purpose)."""
        with self._state:
            self._state.wait_for(lambda: self.freeze is not None or self._stopping, timeout)
            return self.freeze

    def acknowledge(self) -> Freeze | None:
        """A test that froze Orthanc on purpose takes the freeze: it is not reported, requests work again."""
        freeze = self.freeze
        with _lock:
            if freeze in _unreported:
                _unreported.remove(freeze)
        self.freeze = None
        return freeze

    def settle(self):
        """If Orthanc is not answering now, waits until it answers again, trips, or exits."""
        with self._state:
            self._state.wait_for(lambda: self._stopping or self.tripped or self.process.poll() is not None
                                 or time.monotonic() - self.last_answer < POLL_TIMEOUT + POLL_INTERVAL,
                                 self.freeze_after + 3 * DUMP_TIMEOUT)

    # --- the polling thread
    def _run(self):
        while True:
            with self._state:
                if self._stopping or self.process.poll() is not None:
                    self._state.notify_all()
                    return
            started = time.monotonic()
            answered = self._poll()
            now = time.monotonic()
            with self._state:
                if answered:
                    self.last_answer = now
                    self._state.notify_all()
                trip = now - self.last_answer > self.freeze_after and not self.tripped
            if trip and self.process.poll() is None:
                self._trip(now - self.last_answer)
            with self._state:
                self._state.wait(max(0.0, POLL_INTERVAL - (time.monotonic() - started)))

    def _poll(self) -> bool:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=POLL_TIMEOUT)
        try:
            for path in PROBES:
                connection.request("GET", path)
                connection.getresponse().read()
            return True  # any HTTP answers: Orthanc's HTTP server and its index work
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _trip(self, silent_for: float):
        pid = self.process.pid
        text, missing = dump_stacks(pid, self.root)
        os.makedirs(self.dump_folder, exist_ok=True)
        path = os.path.join(self.dump_folder, f"freeze-dump-{pid}.txt")
        with open(path, "w") as file:
            file.write(text)
        freeze = Freeze(self.version, pid, silent_for, path, text, missing)
        with _lock:
            _unreported.append(freeze)
        with self._state:
            self.freeze = freeze
            self.tripped = True
            in_flight = list(self._in_flight)
            self._state.notify_all()
        for sock in in_flight:  # the waiting requests raise OrthancFrozen now
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def dump_stacks(pid: int, root: str | None = None) -> tuple[str, list[str]]:
    """Python stacks (py-spy; --native too) and native stacks (gdb) of a process; and the tools missing."""
    parts, missing = [], []
    py_spy = venv_bin("py-spy")
    if py_spy is None:
        missing.append("py-spy (pip install py-spy)")
    else:
        prefix = [py_spy]
        if root:
            # py-spy opens the files a process maps under /proc/PID/root, with the paths the host sees
            # (ROOT/usr/lib/...): inside the chroot, ROOT must lead back to the chroot itself.
            mirror = os.path.join(root, root.lstrip("/"))
            if not os.path.lexists(mirror):
                os.makedirs(os.path.dirname(mirror), exist_ok=True)
                os.symlink(os.path.relpath(root, os.path.dirname(mirror)), mirror)
        # a stopped (SIGSTOP) process cannot be suspended by py-spy: --nonblocking reads it as it is
        for title, options in (("py-spy dump", []), ("py-spy dump --native", ["--native"])):
            output = _run_tool([*prefix, "dump", *options, "--pid", str(pid)])
            if "Failed to suspend process" in output and not options:
                title, output = "py-spy dump --nonblocking", _run_tool([*prefix, "dump", "--nonblocking", "--pid", str(pid)])
            parts.append(f"===== {title} --pid {pid}\n{output}")
    gdb = shutil.which("gdb")
    if gdb is None:
        missing.append("gdb (apt-get install gdb)")
    else:
        command = [gdb, "-batch", "-nx", "-iex", "set debuginfod enabled off"]
        if root:  # the chroot's libraries, not the host's
            command += ["-iex", f"set sysroot {root}"]
        command += ["-p", str(pid), "-ex", "thread apply all bt"]
        parts.append(f"===== gdb -p {pid} -batch -ex 'thread apply all bt'\n{_run_tool(command)}")
    if missing:
        parts.append("===== not installed: " + ", ".join(missing))
    return "\n\n".join(parts) + "\n", missing


def _run_tool(command) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=DUMP_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"[no result within {DUMP_TIMEOUT:.0f} s]"
    output = done.stdout + (f"\n[stderr]\n{done.stderr}" if done.stderr.strip() else "")
    return output if done.returncode == 0 else f"[exit code {done.returncode}]\n{output}"
