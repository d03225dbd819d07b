"""The periodic indexer (``Indexer`` in the storage section): adopts new objects and abandons vanished ones by itself.

Every ``Interval`` (the first round once Orthanc has started) it submits, for each of its ``Prefixes``, an
asynchronous adopt job (``jobs.adopt_jobs``, shown under ``/jobs`` with ``"Origin": "Indexer"``) unless a job of
that prefix is still unfinished (an administrator's, or the last round's that is still running or resumed
after a restart). The job does the work of ``POST /objstore/adopt``: new objects are adopted, those adopted
before are ``AlreadyStored`` without a write, and the instances whose object vanished are abandoned. A round
that fails (e.g. the job cannot be saved) is logged and the next round tries again; a job that fails (e.g. the
store is down while it lists) is a failed job in ``/jobs``, and the next round submits a new one.

Scale-out: replicas sharing an index run the indexer on one of them only (``Enabled: false`` on the others),
as the tiering policy; each replica's jobs are its own (kept under its ``DatabaseServerIdentifier``).
"""

import logging
import threading

from .adopt_jobs import AdoptManager

log = logging.getLogger("orthanc_objstore.jobs.indexer")

ORIGIN = "Indexer"


class Indexer:
    """Runs rounds in a daemon thread (``start``/``stop``); ``settings`` is a ``config.IndexerConfig``."""

    def __init__(self, manager: AdoptManager, settings):
        self.manager = manager
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (f"indexer of {', '.join(map(repr, self.settings.prefixes))} every {self.settings.interval} s"
                f"{' taking ownership' if self.settings.take_ownership else ''}")

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="objstore-indexer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_round()
            except Exception as exc:  # noqa: BLE001 - a failed round is retried at the next one
                log.warning("indexer round failed, retried in %d s: %s: %s", self.settings.interval,
                            type(exc).__name__, exc)
            self._stop.wait(self.settings.interval)

    def run_round(self) -> list[str]:
        """Submits a job for every prefix that has no unfinished one; the ids of the jobs submitted."""
        submitted = []
        for prefix in self.settings.prefixes:
            running = self.manager.active(prefix)
            if running is not None:
                log.info("indexer: prefix %r skipped this round, job %s is still %s", prefix, running.id,
                         running.state)
                continue
            submitted.append(self.manager.submit(prefix, self.settings.take_ownership, ORIGIN).id)
        return submitted
