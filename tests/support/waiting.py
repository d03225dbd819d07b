"""Waiting without sleeping blindly: poll a condition until it holds, run a call in the background."""

import threading
import time


def wait_for(predicate, timeout=20.0, interval=0.2):
    """Polls ``predicate()`` every ``interval`` s until it returns a true value or ``timeout`` s have passed;
    returns its last value (the caller asserts on it, so a timeout fails with what was seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def in_background(call, *arguments):
    """Starts ``call(*arguments)`` in a daemon thread: (the thread, a list that receives its result, or
    the exception it raised, for the test to inspect)."""
    outcome = []

    def run():
        try:
            outcome.append(call(*arguments))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome
