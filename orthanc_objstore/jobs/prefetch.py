"""The prefetcher: reads the attachments of a series or study in parallel, ahead of Orthanc's sequential reads.

``Prefetcher.schedule(target)`` only queues (it is called from Orthanc's HTTP request filter and
must return at once). One worker thread resolves each target to its instances' DICOM attachments
through the port (``/tools/lookup`` for a DICOM UID, then ``/{series|studies}/{id}/instances``,
which lists each instance's ``FileUuid`` and ``FileSize``), announces them to the read cache
(``ReadCache.expect``) and reads them whole through the area, at most ``max_in_flight`` at once and
at most ``max_bytes_in_flight`` bytes being read, into the cache (the reads are marked as prefetches:
``storage.cached.prefetching``). Orthanc's own reads of the same objects wait for those requests
instead of making their own (the cache's single flight).

Bounds: a target is read at most once per ``REPEAT_SECONDS`` (a viewer's many frame requests name
the same series), an attachment at most once per ``REPEAT_SECONDS``, one target reads at most half the
cache's capacity (more would evict what it has just fetched), objects larger than the cache's largest
entry are left to Orthanc, and the queue holds at most ``QUEUE_LIMIT`` targets (more are dropped).
"""

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..areas.contract import Area
from ..areas.naming import CONTENT_TYPE_DICOM
from ..port.index import OrthancApi, valid_resource_id
from ..storage.cached import ReadCache, prefetching

log = logging.getLogger("orthanc_objstore")

SERIES, STUDY = "Series", "Study"
REPEAT_SECONDS = 30.0
QUEUE_LIMIT = 64
_FOLDERS = {SERIES: "series", STUDY: "studies"}


@dataclass(frozen=True)
class Target:
    """A series or study about to be read: by Orthanc id, or by DICOM UID (``uid=True``)."""

    level: str  # SERIES or STUDY
    identifier: str
    uid: bool = False


class Prefetcher:
    def __init__(self, api: OrthancApi, area: Area, cache: ReadCache, max_in_flight: int = 16,
                 max_bytes_in_flight: int = 64 * 2**20):
        self.api = api
        self.area = area
        self.cache = cache
        self.max_in_flight = max_in_flight
        self.max_bytes_in_flight = max_bytes_in_flight
        self._queue: queue.Queue[Target | None] = queue.Queue(QUEUE_LIMIT)
        self._recent_targets: dict[Target, float] = {}
        self._recent_uuids: dict[str, float] = {}
        self._bytes = 0
        self._room = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()
        self.dropped = 0

    def __repr__(self) -> str:
        return f"Prefetcher({self.max_in_flight} in flight, {self.max_bytes_in_flight // 2**20} MB)"

    def start(self) -> None:
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="objstore-prefetch")
        self._thread = threading.Thread(target=self._run, name="objstore-prefetcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def schedule(self, target: Target) -> bool:
        """Queues ``target`` unless it was queued within ``REPEAT_SECONDS``; never blocks. True when queued."""
        now = time.monotonic()
        last = self._recent_targets.get(target)
        if last is not None and now - last < REPEAT_SECONDS:
            return False
        self._recent_targets[target] = now
        if len(self._recent_targets) > 4096:
            self._recent_targets = {t: when for t, when in self._recent_targets.items() if now - when < REPEAT_SECONDS}
        try:
            self._queue.put_nowait(target)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            target = self._queue.get()
            if target is None:
                return
            try:
                self.prefetch(target)
            except Exception as exc:  # noqa: BLE001 - a failed prefetch only loses time, never data
                log.info("prefetch of %s %s skipped: %s", target.level.lower(), target.identifier, exc)

    def prefetch(self, target: Target) -> int:
        """Reads ``target``'s DICOM files into the cache (waits for the resolution, not for the reads);
        returns how many reads were started."""
        started = time.monotonic()
        with self.cache.resolving():
            files = self.resolve(target)
            now = time.monotonic()
            budget = self.cache.capacity // 2
            chosen = []
            for uuid, size in files:
                if size > self.cache.max_entry or now - self._recent_uuids.get(uuid, -REPEAT_SECONDS) < REPEAT_SECONDS:
                    continue
                if size > budget:
                    break
                budget -= size
                chosen.append((uuid, size))
                self._recent_uuids[uuid] = now
            if len(self._recent_uuids) > 100000:
                self._recent_uuids = {u: w for u, w in self._recent_uuids.items() if now - w < REPEAT_SECONDS}
            self.cache.expect(uuid for uuid, _ in chosen)
        log.info("prefetch of %s %s: %d of its %d files (%.1f MB) to read, resolved in %.0f ms", target.level.lower(),
                 target.identifier, len(chosen), len(files), sum(size for _, size in chosen) / 2**20,
                 (time.monotonic() - started) * 1000)
        for uuid, size in chosen:
            if self._stopping.is_set() or self._pool is None:
                break
            self._reserve(size)
            self._pool.submit(self._read, uuid, size)
        return len(chosen)

    def resolve(self, target: Target) -> list[tuple[str, int]]:
        """(uuid, size) of the DICOM file of each instance of ``target``, in Orthanc's order."""
        identifier: object = target.identifier
        if target.uid:
            matches = self.api.post_json("/tools/lookup", target.identifier) or []
            ids = [m.get("ID") for m in matches if isinstance(m, dict) and m.get("Type") == target.level]
            if not ids:
                return []
            identifier = ids[0]
        if not isinstance(identifier, str) or not valid_resource_id(identifier):
            return []
        instances = self.api.get_json(f"/{_FOLDERS[target.level]}/{identifier}/instances") or []
        return [(item["FileUuid"], int(item.get("FileSize", 0))) for item in instances
                if isinstance(item, dict) and isinstance(item.get("FileUuid"), str)]

    def _reserve(self, size: int) -> None:
        with self._room:
            self._room.wait_for(lambda: self._bytes == 0 or self._bytes + size <= self.max_bytes_in_flight
                                or self._stopping.is_set())
            self._bytes += size

    def _read(self, uuid: str, size: int) -> None:
        try:
            with prefetching():
                self.area.read(uuid, CONTENT_TYPE_DICOM)
        except Exception as exc:  # noqa: BLE001 - Orthanc's own read will meet (and report) the same error
            log.debug("prefetch of attachment %s failed: %s", uuid, exc)
        finally:
            with self._room:
                self._bytes -= size
                self._room.notify_all()
