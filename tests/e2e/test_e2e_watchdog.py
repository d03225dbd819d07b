"""End to end: the tests' watchdog finds a frozen Orthanc, dumps its stacks and fails the test at once."""

import os
import shutil
import signal
import threading
import time

import pytest
from support import watchdog as watchdog_module
from support.orthanc import OrthancFrozen
from support.servers import require, venv_bin

pytestmark = pytest.mark.orthanc

FREEZE_AFTER = 4.0  # this test's own threshold, to keep it quick (the suite's is watchdog.FREEZE_AFTER)


def wait_stopped(pid, timeout=10.0):
    """Waits until every thread of ``pid`` is stopped: kill(SIGSTOP) returns before a thread running on another
    core has stopped, and such a thread can still answer a request for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/stat") as file:
                    states.append(file.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
        if states and all(state in ("T", "t") for state in states):
            return
        assert time.monotonic() < deadline, f"Orthanc (PID {pid}) not stopped after SIGSTOP: {states}"
        time.sleep(0.01)


def test_a_stopped_orthanc_trips_the_watchdog(s3_backend, orthanc_factory):
    require(venv_bin("py-spy") is not None, "py-spy is not installed (pip install '.[test]')")
    require(shutil.which("gdb") is not None, "gdb is not installed (apt-get install gdb)")
    orthanc = orthanc_factory(s3_backend.settings())
    orthanc.watchdog.freeze_after = FREEZE_AFTER
    assert orthanc.get_json("/system")["Version"]
    assert orthanc.watchdog.freeze is None

    pid = orthanc.process.pid
    waiting = {}

    def request_while_frozen():
        started = time.monotonic()
        try:
            orthanc.get("/instances", timeout=600)
            waiting["outcome"] = "answered"
        except OrthancFrozen as frozen:
            waiting["outcome"] = str(frozen)
        waiting["seconds"] = time.monotonic() - started

    os.kill(pid, signal.SIGSTOP)
    try:
        wait_stopped(pid)
        client = threading.Thread(target=request_while_frozen)
        client.start()
        freeze = orthanc.watchdog.wait_freeze(timeout=FREEZE_AFTER + 4 * watchdog_module.DUMP_TIMEOUT)
        client.join(30)
        waited_for_an_answer = client.is_alive()  # Orthanc cannot answer before SIGCONT
    finally:
        os.kill(pid, signal.SIGCONT)

    assert freeze is not None, "the watchdog did not trip on a stopped Orthanc"
    assert freeze.pid == pid and freeze.silent_for > FREEZE_AFTER
    # the request in flight ended with the verdict while Orthanc was still stopped, not at its 600 s timeout
    assert not waited_for_an_answer, waiting
    assert "FROZE" in waiting["outcome"] and f"PID {pid}" in waiting["outcome"], waiting
    # the dump is in the test's folder and holds the Python stacks (the plugin's threads) and the native ones
    assert os.path.dirname(freeze.dump_path) == orthanc.test_folder
    with open(freeze.dump_path) as file:
        dump = file.read()
    assert freeze.missing_tools == []
    assert "===== py-spy dump" in dump and "Python v3" in dump, dump[:2000]
    assert "===== gdb" in dump and "Thread 1 " in dump, dump[-2000:]
    assert freeze.verdict() in freeze.report()
    # conftest's report hook would fail this test with it; this test froze Orthanc on purpose and takes it
    assert orthanc.watchdog.acknowledge() is freeze
    assert watchdog_module.take_unreported() == []

    # once running again, Orthanc answers and the watchdog does not dump a second time
    assert orthanc.get_json("/system")["Version"]
    assert orthanc.watchdog.freeze is None and orthanc.watchdog.tripped


def test_a_restart_does_not_trip_the_watchdog(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(s3_backend.settings())
    first = orthanc.watchdog
    first.freeze_after = 1.0
    orthanc.restart()
    time.sleep(2.0)  # the old watchdog stopped with the old process: nothing may trip now
    assert orthanc.watchdog is not first and not first.tripped and not orthanc.watchdog.tripped
    assert watchdog_module.take_unreported() == []
    assert orthanc.get_json("/system")["Version"]
