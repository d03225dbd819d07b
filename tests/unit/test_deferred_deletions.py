"""Deferred deletions on memory stores: the journal's durability (a real SIGKILL), batching, retries, what is
deleted (only what was queued), moves racing with removals, compaction, the options and the status route."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid as uuidlib

import pytest

from orthanc_objstore import build
from orthanc_objstore.areas.contract import FILE_SYSTEM, OBJECT_STORAGE, ObjectArea
from orthanc_objstore.areas.deferred import DeferredDeletions, DeferredRemovalArea
from orthanc_objstore.areas.deletion_queue import JOURNAL_NAME, DeletionJournal
from orthanc_objstore.areas.hybrid import HybridArea
from orthanc_objstore.areas.naming import LEGACY, Naming
from orthanc_objstore.config import sections as config
from orthanc_objstore.errors import ConfigError, NotFound, StoreUnavailable
from orthanc_objstore.jobs.steps import MISSING, MOVED, move_attachment
from orthanc_objstore.orthanc_side.status import StatusRoute
from orthanc_objstore.port.index import Attachment
from orthanc_objstore.storage.cached import CachedStore, ReadCache
from orthanc_objstore.storage.protocol import BatchDelete, Owner, batch_size, delete_keys
from orthanc_objstore.storage.providers.memory import MemoryStore


class BatchStore(MemoryStore):
    """A memory store with batch deletes of ``max_batch`` keys; counts requests; can be down."""

    max_batch = 1000

    def __init__(self, failures=0):
        super().__init__()
        self.requests = []
        self.failures = failures  # batch requests that fail before the store answers again

    def delete_batch(self, keys):
        self.requests.append(len(keys))
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the store is down", keys[0])
        for key in keys:
            self.delete(key)
        return {}

    def keys(self):
        return set(self._objects)


def new_uuid():
    return str(uuidlib.uuid4())


def drainer(tmp_path, stores, **options):
    return DeferredDeletions(DeletionJournal(str(tmp_path / "q")), stores, retry_first=0.01, retry_max=0.05,
                             **options)


def test_batch_delete_is_declared_and_delete_keys_falls_back_to_one_delete_per_key():
    plain, batched = MemoryStore(), BatchStore()
    for store in (plain, batched):
        for i in range(5):
            store.put(f"k{i}", b"x")
    assert not isinstance(plain, BatchDelete) and isinstance(batched, BatchDelete)
    assert delete_keys(plain, ["k0", "k1", "missing"]) == {}
    assert sorted(plain._objects) == ["k2", "k3", "k4"]
    batched.max_batch = 2
    assert delete_keys(batched, ["k0", "k1", "k2", "missing"]) == {}
    assert batched.requests == [2, 2] and sorted(batched.keys()) == ["k3", "k4"]


def test_a_removal_only_queues_and_the_drainer_deletes_in_batches(tmp_path):
    store = BatchStore()
    area = ObjectArea(store, Naming())
    uuids = [new_uuid() for _ in range(2500)]
    for uuid in uuids:
        area.create(uuid, 1, b"dicom")
    kept = new_uuid()
    area.create(kept, 1, b"not deleted")
    deletions = drainer(tmp_path, {OBJECT_STORAGE: store})
    deferred = DeferredRemovalArea(area, {OBJECT_STORAGE: area}, deletions)
    for uuid in uuids:
        deferred.remove(uuid, 1)
    assert len(store.keys()) == 2501 and deletions.pending() == 2500 and store.requests == []
    assert deletions.drain()
    assert store.requests == [1000, 1000, 500]
    assert store.keys() == {f"{kept}.dcm"}  # nothing but what was queued
    assert deletions.pending() == 0 and deletions.status()["Deleted"] == 2500


def test_a_store_outage_only_delays(tmp_path):
    store = BatchStore(failures=3)
    area = ObjectArea(store, Naming())
    uuid = new_uuid()
    area.create(uuid, 1, b"x")
    failed = []
    deletions = drainer(tmp_path, {OBJECT_STORAGE: store}, on_failed=lambda storage, n, exc: failed.append(n))
    DeferredRemovalArea(area, {OBJECT_STORAGE: area}, deletions).remove(uuid, 1)
    assert deletions.drain(timeout=10)
    assert store.requests == [1, 1, 1, 1] and failed == [1, 1, 1] and not store.keys()
    assert "down" in deletions.status()["LastError"]


def test_the_workers_drain_and_a_remove_never_waits_on_a_request_in_flight(tmp_path):
    release = threading.Event()

    class Slow(BatchStore):
        def delete_batch(self, keys):
            release.wait(10)
            return super().delete_batch(keys)

    store = Slow()
    area = ObjectArea(store, Naming())
    uuids = [new_uuid() for _ in range(20)]
    for uuid in uuids:
        area.create(uuid, 1, b"x")
    deletions = drainer(tmp_path, {OBJECT_STORAGE: store}, threads=2)
    deferred = DeferredRemovalArea(area, {OBJECT_STORAGE: area}, deletions)
    deletions.start()
    try:
        deferred.remove(uuids[0], 1)  # taken by a worker, which now hangs in its request
        for uuid in uuids[1:]:
            deferred.remove(uuid, 1)  # returns although a worker is stuck
        assert deletions.pending() == 20
        release.set()
        assert wait(lambda: deletions.pending() == 0)
        assert not store.keys()
    finally:
        release.set()
        deletions.stop()


def wait(condition, timeout=10.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from orthanc_objstore.areas.deletion_queue import DeletionJournal
    journal = DeletionJournal(sys.argv[1])
    entries = journal.append([("object-storage", f"key{i}", f"uuid{i}") for i in range(3)])
    journal.acknowledge([entries[0].id])
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_queue_survives_a_kill_between_append_and_acknowledge(tmp_path):
    folder = str(tmp_path / "q")
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, folder], capture_output=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert result.returncode == -signal.SIGKILL, result.stderr
    journal = DeletionJournal(folder)  # the killed process's lock went with it
    assert [(e.key, e.uuid) for e in journal.pending()] == [("key1", "uuid1"), ("key2", "uuid2")]
    store = BatchStore()
    for key in ("key0", "key1", "key2", "other"):
        store.put(key, b"x")
    deletions = DeferredDeletions(journal, {OBJECT_STORAGE: store})
    assert deletions.was_removed("uuid1")  # a move resumed after the restart does not resurrect it
    assert deletions.drain()
    assert store.keys() == {"key0", "other"}  # key0 was acknowledged (deleted before the kill): not sent again


def test_a_line_cut_by_a_crash_is_ignored_and_the_journal_goes_on(tmp_path):
    folder = tmp_path / "q"
    journal = DeletionJournal(str(folder))
    journal.append([("object-storage", "a", "u1")])
    journal._file.write('{"q": 9, "s": "object-st')  # the crash cut this line
    journal._file.flush()
    journal._lock_file.close()  # as the process's end would
    again = DeletionJournal(str(folder))
    assert [e.key for e in again.pending()] == ["a"]
    again.append([("object-storage", "b", "u2")])
    again.close()
    assert [e.key for e in DeletionJournal(str(folder)).pending()] == ["a", "b"]


def test_compaction_keeps_only_what_is_pending(tmp_path, monkeypatch):
    import orthanc_objstore.areas.deletion_queue as queue
    monkeypatch.setattr(queue, "COMPACT_AFTER", 10)
    journal = DeletionJournal(str(tmp_path / "q"))
    entries = journal.append([("object-storage", f"k{i}", "u") for i in range(50)])
    journal.acknowledge(e.id for e in entries[:45])
    lines = (tmp_path / "q" / JOURNAL_NAME).read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["q"] > 45 for line in lines)
    journal.append([("object-storage", "new", "u")])
    journal.close()
    assert [e.key for e in DeletionJournal(str(tmp_path / "q")).pending()] == [f"k{i}" for i in range(45, 50)] + ["new"]


def test_a_second_process_on_the_same_queue_is_refused(tmp_path):
    first = DeletionJournal(str(tmp_path / "q"))
    with pytest.raises(ConfigError, match="DatabaseServerIdentifier"):
        DeletionJournal(str(tmp_path / "q"))
    first.close()
    DeletionJournal(str(tmp_path / "q")).close()  # free again once the first has stopped


def test_an_unwritable_folder_says_what_to_do(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="DelayedDeletionFolder.*DelayedDeletion\\\": false"):
        DeletionJournal(str(tmp_path / "file" / "q"))


def hybrid(tmp_path):
    objects = ObjectArea(BatchStore(), Naming())
    file_system = ObjectArea(MemoryStore(), Naming(structure=LEGACY), storage_name=FILE_SYSTEM)
    area = HybridArea(file_system, objects, file_system=file_system, object_storage=objects)
    deletions = drainer(tmp_path, {OBJECT_STORAGE: objects.store, FILE_SYSTEM: file_system.store})
    return DeferredRemovalArea(area, {OBJECT_STORAGE: objects, FILE_SYSTEM: file_system}, deletions), objects, \
        file_system, deletions


def test_hybrid_mode_queues_both_sides(tmp_path):
    area, objects, file_system, deletions = hybrid(tmp_path)
    on_files, on_objects = new_uuid(), new_uuid()
    area.create(on_files, 1, b"x")
    objects.create(on_objects, 1, b"y")
    area.remove(on_files, 1)
    area.remove(on_objects, 1)
    assert deletions.pending() == 4  # each attachment's name on each side
    assert deletions.drain()
    assert not objects.store._objects and not file_system.store._objects


def test_a_move_of_a_removed_attachment_neither_resurrects_it_nor_loses_its_deletion(tmp_path):
    area, objects, file_system, deletions = hybrid(tmp_path)
    uuid = new_uuid()
    area.create(uuid, 1, b"data")
    attachment = Attachment(f"instances/{uuid}", uuid, 1, 4, "8d777f385d3dfec8815d20f7496026dc")
    # removed (and drained) before the move's step: the step finds nothing and writes nothing
    area.remove(uuid, 1)
    assert deletions.drain()
    assert move_attachment(attachment, area.side(FILE_SYSTEM), area.side(OBJECT_STORAGE)) == MISSING
    assert not objects.store._objects and not file_system.store._objects


def test_a_removal_racing_with_a_move_step_deletes_the_copy_it_wrote(tmp_path):
    area, objects, file_system, deletions = hybrid(tmp_path)
    uuid = new_uuid()
    area.create(uuid, 1, b"data")
    attachment = Attachment(f"instances/{uuid}", uuid, 1, 4, "8d777f385d3dfec8815d20f7496026dc")
    source, target = area.side(FILE_SYSTEM), area.side(OBJECT_STORAGE)
    read = source.read

    def read_then_removed(uuid, content_type):  # Orthanc deletes the instance while the step holds its bytes
        data = read(uuid, content_type)
        area.remove(uuid, content_type)
        assert deletions.drain()
        return data

    source.read = read_then_removed
    assert move_attachment(attachment, source, target) == MOVED
    assert deletions.drain()
    assert not objects.store._objects and not file_system.store._objects  # the copy written after is gone too


def test_the_options_and_their_defaults(tmp_path):
    section = {"BucketName": "b", "Region": "r"}
    common = config.parse({"AwsS3Storage": section, "StorageDirectory": str(tmp_path)})[0].common
    assert (common.delayed_deletion, common.delayed_deletion_folder, common.delayed_deletion_threads) == (True, "", 4)
    assert build.deletions_folder(common) == os.path.join(str(tmp_path), "objstore-deletions")
    named = config.parse({"AwsS3Storage": {**section, "DelayedDeletionFolder": str(tmp_path / "d")},
                          "DatabaseServerIdentifier": "replica 1"})[0]
    assert build.deletions_folder(named.common) == os.path.join(str(tmp_path / "d"), "replica_1")
    off = config.parse({"AwsS3Storage": {**section, "DelayedDeletion": False}})[0]
    area = ObjectArea(MemoryStore(), Naming())
    assert build.with_deferred_deletions(off, area) == (area, None)
    with pytest.raises(ConfigError, match="DelayedDeletionThreads: 0 .*from 1 to 64"):
        config.parse({"AwsS3Storage": {**section, "DelayedDeletionThreads": 0}})


def test_with_deferred_deletions_wraps_the_built_area(tmp_path):
    plugin = config.parse({"AwsS3Storage": {"BucketName": "b", "Region": "r", "HybridMode": "WriteToFileSystem"},
                           "StorageDirectory": str(tmp_path / "storage")})[0]
    metrics = build.storage_metrics(plugin)
    area, deletions = build.with_deferred_deletions(plugin, build.build_area(plugin, BatchStore(), metrics), metrics)
    assert isinstance(area, DeferredRemovalArea) and set(area.sides) == {OBJECT_STORAGE, FILE_SYSTEM}
    uuid = new_uuid()
    area.create(uuid, 1, b"x")
    area.remove(uuid, 1)
    text = metrics.metrics.prometheus_text()
    assert "orthanc_objstore_deletions_pending 2" in text
    assert deletions.drain()
    assert not os.path.exists(tmp_path / "storage" / uuid[:2] / uuid[2:4] / uuid)
    assert "orthanc_objstore_deletions_pending 0" in metrics.metrics.prometheus_text()
    deletions.stop()


class Output:
    def AnswerBuffer(self, body, mime):
        self.body, self.mime = body, mime


def test_the_status_route(tmp_path):
    deletions = drainer(tmp_path, {OBJECT_STORAGE: BatchStore()})
    deletions.enqueue(new_uuid(), [(OBJECT_STORAGE, "k")])
    output = Output()
    StatusRoute(deletions, lambda: 2)(output, None)
    answer = json.loads(output.body)
    assert answer["DelayedDeletion"]["Pending"] == 1 and answer["OrphansPending"] == 2
    StatusRoute(None, lambda: 0)(output, None)
    assert json.loads(output.body)["DelayedDeletion"] == {"Enabled": False}


def test_batches_go_through_the_read_cache_and_it_forgets_what_they_delete(tmp_path):
    """The read cache sits in front of every provider: the drainer still sends batches through it."""
    inner = BatchStore()
    cached = CachedStore(inner, ReadCache(1 << 20, 1 << 20, "", 0))
    owner = Owner(new_uuid(), 1)
    for name in ("a", "b", "c"):
        inner.put(name, b"data of " + name.encode(), owner=owner)
        assert cached.get(name, owner=owner) == b"data of " + name.encode()  # now in the cache
    assert batch_size(cached) == 1000
    assert delete_keys(cached, ["a", "b", "c"]) == {}
    assert inner.requests == [3] and inner.keys() == set()
    for name in ("a", "b", "c"):  # not served from the cache after its deletion
        with pytest.raises(NotFound):
            cached.get(name, owner=owner)
