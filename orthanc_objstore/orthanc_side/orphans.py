"""Cleans up objects that failed uploads leave behind, once the store answers again (SPEC Q-1).

Two cases leave an object in the store that Orthanc's index will never reference:

* a write the plugin reported as failed (a timeout, say) that the server completed anyway: the
  attachment's uuid is fresh for every write and Orthanc never uses a uuid whose write failed, so
  deleting that uuid's object is always safe;
* Orthanc itself writes the DICOM file, then fails on the next attachment of the same upload and
  gives up without removing the first one (``callbacks.StorageCallbacks`` proves that the file
  belongs to the failed upload before it schedules it).

Work is retried with backoff in one background thread, so a store that is down delays the cleanup
but never blocks Orthanc's threads. The reaper never calls Orthanc: deciding needs no index, and a
background thread waiting on Orthanc's index with the GIL held could freeze Orthanc (SPEC Q-5).
"""

import heapq
import itertools
import logging
import threading
import time

from ..errors import StoreError

log = logging.getLogger(__name__)


class OrphanReaper:
    def __init__(self, area, first_delay=2.0, max_delay=60.0, give_up_after=24 * 3600):
        self.area = area
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.give_up_after = give_up_after
        self._queue: list = []  # (due, sequence, uuid, content_type, attempts, first_seen)
        self._sequence = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = None

    def schedule(self, uuid: str, content_type: int) -> None:
        """Deletes (uuid, content_type) soon, retrying until the store answers."""
        now = time.monotonic()
        with self._wake:
            heapq.heappush(self._queue, (now + self.first_delay, next(self._sequence), uuid, content_type, 0, now))
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="objstore-orphans", daemon=True)
                self._thread.start()
            self._wake.notify()

    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if self._queue:
            log.warning("%d object(s) left by failed uploads could not be cleaned up before Orthanc stopped",
                        len(self._queue))

    def _run(self):
        while True:
            with self._wake:
                while not self._stopping and (not self._queue or self._queue[0][0] > time.monotonic()):
                    self._wake.wait(self._queue[0][0] - time.monotonic() if self._queue else None)
                if self._stopping:
                    return
                item = heapq.heappop(self._queue)
            self._process(*item[2:])

    def _process(self, uuid, content_type, attempts, first_seen):
        try:
            self.area.remove(uuid, content_type)
            log.info("removed the object left by a failed upload: attachment %s of type %d", uuid, content_type)
        except StoreError as exc:
            if time.monotonic() - first_seen > self.give_up_after:
                log.error("giving up removing the object left by a failed upload (attachment %s of type %d): %s",
                          uuid, content_type, exc)
                return
            delay = min(self.max_delay, self.first_delay * 2 ** (attempts + 1))
            with self._wake:
                heapq.heappush(self._queue, (time.monotonic() + delay, next(self._sequence), uuid, content_type,
                                             attempts + 1, first_seen))
        except Exception:  # noqa: BLE001 - a bug here must not kill the thread
            log.exception("could not remove attachment %s of type %d left by a failed upload", uuid, content_type)
