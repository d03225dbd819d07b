"""Running an offline command's steps in parallel, with progress: files, bytes, rate and ETA, redrawn on a
terminal, periodic lines elsewhere."""

import concurrent.futures
import sys
import threading
import time

from ..errors import StoreError


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Counts finished files and bytes from many threads; a daemon thread shows them every ``interval``.

    On a terminal the line is redrawn in place (``\\r``) every 0.5 s; otherwise (a log, a pipe) a plain
    line is written every 10 s. ``say`` prints a message (a problem) to ``out`` without mixing it into
    the progress line. Used as a context manager: the last state is shown when it ends.
    """

    def __init__(self, verb: str, total_files: int, total_bytes: int, stream=None, out=None,
                 interval: float | None = None):
        self.verb = verb
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.stream = stream or sys.stderr
        self.out = out or sys.stdout
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval or (0.5 if self.interactive else 10.0)
        self.files = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name="objstore-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._done.set()
        self._thread.join()
        self._show(final=True)

    def advance(self, size: int) -> None:
        with self._lock:
            self.files += 1
            self.bytes += size

    def say(self, line: str) -> None:
        with self._lock:
            if self.interactive:
                self.stream.write("\r\033[K")
                self.stream.flush()
            print(line, file=self.out, flush=True)

    def line(self) -> str:
        with self._lock:
            files, done = self.files, self.bytes
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        percent = 100 * done / self.total_bytes if self.total_bytes else 100.0 * (files >= self.total_files)
        eta = _duration((self.total_bytes - done) / rate) if rate > 0 else "?"
        return (f"{self.verb}: {files}/{self.total_files} files, {_size(done)}/{_size(self.total_bytes)} "
                f"({percent:.0f}%), {_size(rate)}/s, {files / elapsed:.1f} files/s, "
                f"elapsed {_duration(elapsed)}, ETA {eta}")

    def _run(self):
        while not self._done.wait(self.interval):
            self._show()

    def _show(self, final=False):
        text = self.line()
        with self._lock:
            if self.interactive:
                self.stream.write("\r\033[K" + text + ("\n" if final else ""))
            else:
                self.stream.write(text + "\n")
            self.stream.flush()


# What a step of an offline command did to one attachment (the summary counts them, by outcome)
OK, COPIED, SKIPPED, TO_COPY, CURRENT, REENCRYPTED, FAILED = (
    "ok", "copied", "skipped", "to copy", "current", "re-encrypted", "failed")


def describe_attachment(entry) -> str:
    """How problem lines name an attachment (an ``offline_index.IndexEntry``)."""
    return f"attachment {entry.uuid} (type {entry.file_type}) of {entry.resource}"


def run_steps(verb: str, entries, step, workers: int, out=None, stream=None) -> dict:
    """Runs ``step(entry)`` for every entry in a pool of ``workers``; prints problems; returns the counts."""
    counts: dict[str, list[int]] = {}
    with Progress(verb, len(entries), sum(entry.size for entry in entries), stream=stream, out=out) as progress:
        def one(entry):
            try:
                outcome, problem = step(entry)
            except StoreError as exc:
                outcome, problem = FAILED, f"failed: {describe_attachment(entry)}: {exc}"
            except Exception as exc:  # noqa: BLE001 - one attachment's bug is reported, the others go on
                outcome, problem = FAILED, f"failed: {describe_attachment(entry)}: {type(exc).__name__}: {exc}"
            if problem:
                progress.say(problem)
            progress.advance(entry.size)
            return outcome, entry.size

        with concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="objstore-tool") as pool:
            for outcome, size in pool.map(one, entries):
                total = counts.setdefault(outcome, [0, 0])
                total[0] += 1
                total[1] += size
    return counts
