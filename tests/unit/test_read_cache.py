"""The read cache (storage/cached.py), the prefetcher (jobs/prefetch.py) and the viewer triggers."""

import datetime
import json
import os
import threading
import time

import pytest

from orthanc_objstore.errors import WrongOwner
from orthanc_objstore.jobs.prefetch import SERIES, STUDY, Prefetcher, Target
from orthanc_objstore.orthanc_side.viewer_triggers import ViewerTriggers
from orthanc_objstore.storage.cached import CachedStore, ReadCache, prefetching
from orthanc_objstore.storage.protocol import Owner
from orthanc_objstore.storage.providers.memory import MemoryStore

MB = 2**20


class CountingStore(MemoryStore):
    """A memory store that counts its reads and can make them slow."""

    def __init__(self, delay=0.0):
        super().__init__()
        self.delay = delay
        self.gets: list[str] = []
        self.ranges: list[tuple[str, int, int]] = []
        self.in_flight = self.most_in_flight = 0
        self._count_lock = threading.Lock()

    def get(self, key, *, owner=None):
        with self._count_lock:
            self.gets.append(key)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            return super().get(key, owner=owner)
        finally:
            with self._count_lock:
                self.in_flight -= 1

    def get_range(self, key, start, length, *, owner=None):
        with self._count_lock:
            self.ranges.append((key, start, length))
        return MemoryStore.get(self, key, owner=owner)[start:start + length]


def _cached(memory=8 * MB, max_entry=4 * MB, folder="", disk=0, delay=0.0):
    inner = CountingStore(delay)
    return inner, CachedStore(inner, ReadCache(memory, max_entry, folder, disk))


def test_second_read_is_served_by_the_cache():
    inner, store = _cached()
    inner.put("a.dcm", b"x" * 1000)
    assert store.get("a.dcm") == store.get("a.dcm") == b"x" * 1000
    assert inner.gets == ["a.dcm"]
    assert (store.cache.stats.hits, store.cache.stats.misses) == (1, 1)


def test_concurrent_reads_of_one_key_make_one_request():
    inner, store = _cached(delay=0.2)
    inner.put("a.dcm", os.urandom(5000))
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.get("a.dcm"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert inner.gets == ["a.dcm"]


def test_memory_never_holds_more_than_its_budget_and_large_objects_bypass_it():
    inner, store = _cached(memory=1 * MB, max_entry=300_000)
    for i in range(10):
        inner.put(f"{i}.dcm", os.urandom(200_000))
        store.get(f"{i}.dcm")
        assert store.cache.memory_bytes <= 1 * MB
    assert store.cache.stats.memory_evictions == 5
    inner.put("big.dcm", os.urandom(400_000))
    store.get("big.dcm")
    store.get("big.dcm")
    assert inner.gets.count("big.dcm") == 2


def test_range_of_a_cached_object_costs_no_request():
    inner, store = _cached()
    data = os.urandom(10_000)
    inner.put("a.dcm", data)
    store.get("a.dcm")
    assert store.get_range("a.dcm", 100, 50) == data[100:150]
    assert inner.ranges == []


def test_range_of_an_expected_object_reads_it_whole_once():
    inner, store = _cached()
    data = os.urandom(10_000)
    owner = Owner("uuid-1", 1)
    inner.put("a.dcm", data, owner=owner)
    store.cache.expect(["uuid-1"])
    assert store.get_range("a.dcm", 0, 128, owner=owner) == data[:128]
    assert store.get("a.dcm", owner=owner) == data
    assert inner.gets == ["a.dcm"] and inner.ranges == []


def test_range_of_an_unknown_object_stays_a_range_read():
    inner, store = _cached()
    inner.put("a.dcm", os.urandom(10_000))
    store.get_range("a.dcm", 0, 128, owner=Owner("u", 1))
    assert inner.ranges == [("a.dcm", 0, 128)] and inner.gets == []


def test_delete_put_and_forget_invalidate():
    inner, store = _cached()
    owner = Owner("uuid-1", 1)
    store.put("a.dcm", b"old", owner=owner)
    store.get("a.dcm", owner=owner)
    store.put("a.dcm", b"new", owner=owner)
    assert store.get("a.dcm", owner=owner) == b"new"
    store.cache.forget("uuid-1")
    assert store.get("a.dcm", owner=owner) == b"new"
    assert inner.gets == ["a.dcm", "a.dcm", "a.dcm"]
    store.delete("a.dcm")
    assert store.cache.memory_bytes == 0


def test_owner_checks_still_apply_to_cached_objects():
    inner, store = _cached()
    inner.put("a.dcm", b"data", owner=Owner("uuid-1", 1))
    store.get("a.dcm", owner=Owner("uuid-1", 1))
    with pytest.raises(WrongOwner):
        store.get("a.dcm", owner=Owner("uuid-2", 1))
    with pytest.raises(WrongOwner):
        store.get_range("a.dcm", 0, 2, owner=Owner("uuid-2", 1))


def test_disk_cache_survives_a_restart_and_drops_a_damaged_entry(tmp_path):
    folder = str(tmp_path / "cache")
    inner, store = _cached(memory=0, folder=folder, disk=4 * MB)
    inner.put("a.dcm", b"stored bytes")
    store.get("a.dcm")
    again = CachedStore(inner, ReadCache(0, 4 * MB, folder, 4 * MB))
    assert again.get("a.dcm") == b"stored bytes"
    assert inner.gets == ["a.dcm"]
    (entry,) = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files]
    with open(entry, "r+b") as file:
        file.seek(-1, os.SEEK_END)
        file.write(b"X")
    assert again.get("a.dcm") == b"stored bytes"
    assert inner.gets == ["a.dcm", "a.dcm"] and again.cache.stats.disk_damaged == 1


class MarkedStore(CountingStore):
    """A counting store with an owner mark (``OwnerMarking``), as S3, Azure and GCS are at start-up."""

    owners_since = None

    def mark_owners(self, key):
        raise AssertionError("not asked here")


def test_disk_entries_are_served_only_under_the_owner_checks_they_were_read_with(tmp_path):
    folder = str(tmp_path / "cache")
    inner = MarkedStore()  # OwnerlessObjects Accept (owners_since None)
    inner.put("a.dcm", b"bare bytes")
    CachedStore(inner, ReadCache(0, 4 * MB, folder, 4 * MB)).get("a.dcm", owner=Owner("uuid-1", 1))
    assert CachedStore(inner, ReadCache(0, 4 * MB, folder, 4 * MB)).get("a.dcm", owner=Owner("uuid-1", 1))
    assert inner.gets == ["a.dcm"]  # same checks after the restart: served from disk

    inner.owners_since = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)  # back to AcceptBeforeMark
    restarted = CachedStore(inner, ReadCache(0, 4 * MB, folder, 4 * MB))
    restarted.get("a.dcm", owner=Owner("uuid-1", 1))  # asked of the store again, whose checks decide
    assert inner.gets == ["a.dcm", "a.dcm"]  # (the refusal itself: tests/providers/test_owner_metadata.py)


def test_disk_entries_of_a_version_without_owner_checks_are_dropped(tmp_path):
    folder = str(tmp_path / "cache")
    inner, store = _cached(memory=0, folder=folder, disk=4 * MB)
    inner.put("a.dcm", b"stored bytes")
    store.get("a.dcm")
    (entry,) = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files]
    with open(entry, "rb") as file:
        meta, body = file.read().split(b"\n", 1)
    with open(entry, "wb") as file:  # the line an older version wrote: no owner_scope
        old = {name: value for name, value in json.loads(meta).items() if name != "owner_scope"}
        file.write(json.dumps(old).encode() + b"\n" + body)
    assert CachedStore(inner, ReadCache(0, 4 * MB, folder, 4 * MB)).get("a.dcm") == b"stored bytes"
    assert inner.gets == ["a.dcm", "a.dcm"]


def test_disk_cache_is_bounded(tmp_path):
    inner, store = _cached(memory=0, folder=str(tmp_path / "c"), disk=1 * MB)
    for i in range(10):
        inner.put(f"{i}.dcm", os.urandom(200_000))
        store.get(f"{i}.dcm")
    assert store.cache.disk_bytes <= 1 * MB
    on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(tmp_path / "c") for f in files)
    assert on_disk <= 1 * MB and store.cache.stats.disk_evictions >= 5


def test_prefetched_entries_are_counted_used_or_wasted():
    inner, store = _cached(memory=1 * MB, max_entry=1 * MB)
    for i in range(3):
        inner.put(f"{i}.dcm", os.urandom(400_000))
    with prefetching():
        store.get("0.dcm")
        store.get("1.dcm")
    store.get("0.dcm")
    store.get("2.dcm")  # evicts 1.dcm, never read: wasted
    stats = store.cache.stats
    assert (stats.prefetch_issued, stats.prefetch_used, stats.prefetch_wasted) == (2, 1, 1)
    assert stats.prefetch_wasted_bytes == 400_000


class FakeApi:
    def __init__(self, instances):
        self.instances = instances
        self.calls = []

    def post_json(self, uri, body):
        self.calls.append(uri)
        return [{"ID": "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d", "Type": "Series"}]

    def get_json(self, uri):
        self.calls.append(uri)
        return self.instances


class UuidArea:
    """An area reading ``<uuid>.dcm`` from a CachedStore, with the owner as ObjectArea gives it."""

    def __init__(self, store):
        self.store = store

    def read(self, uuid, content_type, location=None):
        return self.store.get(f"{uuid}.dcm", owner=Owner(uuid, content_type))


def test_prefetcher_reads_a_series_in_parallel_once():
    inner, store = _cached(memory=64 * MB, delay=0.05)
    instances = [{"FileUuid": f"u{i}", "FileSize": 1000} for i in range(40)]
    for item in instances:
        inner.put(f"{item['FileUuid']}.dcm", os.urandom(1000), owner=Owner(item["FileUuid"], 1))
    prefetcher = Prefetcher(FakeApi(instances), UuidArea(store), store.cache, max_in_flight=16)
    prefetcher.start()
    try:
        assert prefetcher.schedule(Target(SERIES, "1.2.3", uid=True))
        assert not prefetcher.schedule(Target(SERIES, "1.2.3", uid=True))  # repeated: not queued again
        area = UuidArea(store)
        for item in instances:  # Orthanc's sequential reads
            area.read(item["FileUuid"], 1)
    finally:
        prefetcher.stop()
    assert sorted(inner.gets) == sorted(f"{item['FileUuid']}.dcm" for item in instances)  # each one once
    assert 1 < inner.most_in_flight <= 16, (store.cache.stats, inner.gets[:5])
    assert store.cache.stats.prefetch_issued >= 1


@pytest.mark.parametrize("method, uri, expected", [
    ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/metadata", Target(SERIES, "1.2.3.4", True)),
    ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.5/frames/1", Target(SERIES, "1.2.3.4", True)),
    ("GET", "/dicom-web/studies/1.2.3/series", Target(STUDY, "1.2.3", True)),
    ("GET", "/dicom-web/studies/1.2.3/metadata", Target(STUDY, "1.2.3", True)),
    (1, "/dicom-web/studies/1.2.3", Target(STUDY, "1.2.3", True)),
    ("POST", "/series/0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d/archive",
     Target(SERIES, "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d")),
    ("GET", "/studies/0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d/media",
     Target(STUDY, "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d")),
    ("GET", "/dicom-web/studies?PatientID=1", None),
    ("DELETE", "/studies/0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d/archive", None),
    ("GET", "/series/0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d/instances", None),
    ("GET", "/dicom-web/studies/1.2.3/series/../../x", None),
])
def test_viewer_triggers(method, uri, expected):
    assert ViewerTriggers().target(method, uri) == expected


def test_viewer_triggers_follow_the_dicomweb_root():
    wado = ViewerTriggers("/wado/")
    assert wado.target("GET", "/wado/studies/1.2/series/1.3/metadata") == Target(SERIES, "1.3", True)
    assert ViewerTriggers("/wado/").target("GET", "/dicom-web/studies/1.2/series/1.3/metadata") is None


def _common(**section):
    from orthanc_objstore.config import sections as config

    parsed, warnings = config.parse({"AwsS3Storage": {"BucketName": "b", "Region": "r", **section}})
    return parsed.common, warnings


def test_read_cache_and_prefetch_are_on_by_default_and_false_turns_them_off():
    from orthanc_objstore.config.sections import PrefetchConfig, ReadCacheConfig

    common, _ = _common()
    assert common.read_cache == ReadCacheConfig() and common.prefetch == PrefetchConfig()
    assert common.read_cache.memory_size_mb == 256 and common.prefetch.max_in_flight == 16
    common, _ = _common(ReadCache=False, Prefetch={"Enable": False})
    assert common.read_cache is None and common.prefetch is None
    common, warnings = _common(ReadCache={"MemorySize": 64, "MaxEntrySise": 1})
    assert common.read_cache.memory_size_mb == 64
    assert any('did you mean "MaxEntrySize"' in warning for warning in warnings)


@pytest.mark.parametrize("section, problem", [
    ({"ReadCache": {"MemorySize": -1}}, "ReadCache.MemorySize: -1 (number) is invalid; allowed: an integer from 0"),
    ({"ReadCache": {"Folder": "cache"}}, "ReadCache.Folder: 'cache' is not an absolute path"),
    ({"ReadCache": "yes"}, "ReadCache: must be a JSON object, got string"),
    ({"Prefetch": {"MaxInFlight": 65}}, "Prefetch.MaxInFlight: 65 (number) is invalid; allowed: an integer from 1 to"),
])
def test_bad_read_cache_and_prefetch_options_are_refused(section, problem):
    from orthanc_objstore.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        _common(**section)
    assert any(problem in line for line in raised.value.problems), raised.value.problems
