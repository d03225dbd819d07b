"""The metrics registry, the MeteredArea wrapper, and the hooks (hybrid fallbacks, move steps), in memory.

S3 retries, counted against moto, are tests/providers/test_s3_options.py."""

import concurrent.futures
import os
import threading
import uuid as uuidlib

import pytest
from support.faulty_store import FaultyStore
from support.hybrid_world import FakeIndex

from orthanc_objstore import build
from orthanc_objstore.areas.contract import ObjectArea
from orthanc_objstore.areas.naming import Naming
from orthanc_objstore.config import sections as config
from orthanc_objstore.errors import (
    IntegrityError,
    NotFound,
    PermissionDenied,
    StoreError,
    StoreUnavailable,
    UnknownKeyError,
)
from orthanc_objstore.jobs import scheduler as jobs
from orthanc_objstore.jobs import steps as move
from orthanc_objstore.jobs.journal import FileJobStore
from orthanc_objstore.metrics.metered import (
    BYTES_TOTAL,
    ERRORS_TOTAL,
    FALLBACKS_TOTAL,
    MOVE_BYTES_TOTAL,
    MOVE_FILES_TOTAL,
    OPERATIONS_TOTAL,
    ORPHANS_PENDING,
    MeteredArea,
    StorageMetrics,
    error_kind,
)
from orthanc_objstore.metrics.registry import Counter, Metrics, Publisher, exposed_name, flat_name
from orthanc_objstore.storage.providers.memory import MemoryStore

OBJECTS = "object-storage"


def new_uuid():
    return str(uuidlib.uuid4())


# -- the registry


def test_counters_only_go_up_and_are_shared_by_key():
    metrics = Metrics()
    counter = metrics.counter("orthanc_objstore_things_total", "Things", side="a")
    assert metrics.counter("orthanc_objstore_things_total", side="a") is counter
    assert metrics.counter("orthanc_objstore_things_total", side="b") is not counter
    counter.add()
    counter.add(41)
    assert metrics.value("orthanc_objstore_things_total", side="a") == 42
    assert metrics.value("orthanc_objstore_things_total", side="b") == 0
    with pytest.raises(ValueError, match="only goes up"):
        counter.add(-1)
    with pytest.raises(KeyError):
        metrics.value("orthanc_objstore_things_total", side="c")


@pytest.mark.parametrize("name, labels, problem", [
    ("things_total", {}, "must start with 'orthanc_objstore_'"),
    ("orthanc_objstore_bad-name", {}, "letters, digits"),
    ("orthanc_objstore_x", {"bad-label": "v"}, "label"),
    ("orthanc_objstore_x", {"side": 'quote"'}, "plain value"),
])
def test_bad_names_are_refused_with_what_is_allowed(name, labels, problem):
    with pytest.raises(ValueError, match=problem):
        Metrics().counter(name, **labels)


def test_names_with_labels_and_flat_names():
    labels = (("operation", "read"), ("storage", "object-storage"))
    assert exposed_name(OPERATIONS_TOTAL, labels) == \
        'orthanc_objstore_operations_total{operation="read",storage="object-storage"}'
    assert flat_name(OPERATIONS_TOTAL, labels) == "orthanc_objstore_read_object_storage_operations_total"
    assert flat_name(ORPHANS_PENDING, ()) == ORPHANS_PENDING
    metrics = Metrics()
    metrics.counter(OPERATIONS_TOTAL, storage="file-system", operation="write").add(3)  # labels sorted
    assert metrics.samples() == [('orthanc_objstore_operations_total{operation="write",storage="file-system"}', 3)]
    assert metrics.samples(flat_name) == [("orthanc_objstore_write_file_system_operations_total", 3)]


def test_gauges_are_read_at_each_sample_and_a_broken_one_is_left_out():
    metrics, pending = Metrics(), [3]
    metrics.gauge(ORPHANS_PENDING, lambda: pending[0], "Orphans")
    metrics.gauge("orthanc_objstore_broken", lambda: 1 / 0)
    assert metrics.samples() == [(ORPHANS_PENDING, 3)]
    pending[0] = 0
    assert metrics.value(ORPHANS_PENDING) == 0


def test_prometheus_text_has_help_and_type_lines():
    metrics = Metrics()
    metrics.counter(OPERATIONS_TOTAL, "Storage operations", operation="read", storage=OBJECTS).add(2)
    metrics.counter(OPERATIONS_TOTAL, operation="write", storage=OBJECTS)
    metrics.gauge(ORPHANS_PENDING, lambda: 1)
    assert metrics.prometheus_text().splitlines() == [
        "# HELP orthanc_objstore_operations_total Storage operations",
        "# TYPE orthanc_objstore_operations_total counter",
        'orthanc_objstore_operations_total{operation="read",storage="object-storage"} 2',
        'orthanc_objstore_operations_total{operation="write",storage="object-storage"} 0',
        "# TYPE orthanc_objstore_orphans_pending gauge",
        "orthanc_objstore_orphans_pending 1",
    ]


def test_concurrent_adds_lose_nothing():
    counter = Counter()
    threads, adds = 8, 20_000
    start = threading.Barrier(threads)

    def work():
        start.wait()
        for _ in range(adds):
            counter.add(3)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work) for _ in range(threads)]:
            future.result()
    assert counter.value == threads * adds * 3


def test_publisher_publishes_every_sample_until_stopped():
    metrics = Metrics()
    metrics.counter("orthanc_objstore_x_total").add(5)
    published, twice = [], threading.Event()

    def publish(name, value):
        published.append((name, value))
        if len(published) >= 2:
            twice.set()

    publisher = Publisher(metrics, publish, interval=0.01)
    publisher.start()
    assert twice.wait(10)
    publisher.stop()
    assert not publisher._thread.is_alive()
    assert set(published) == {("orthanc_objstore_x_total", 5)}


def test_a_failing_publication_does_not_stop_the_publisher():
    metrics, calls, again = Metrics(), [], threading.Event()
    metrics.counter("orthanc_objstore_x_total")

    def publish(name, value):
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("Orthanc refused")
        again.set()

    publisher = Publisher(metrics, publish, interval=0.01)
    publisher.start()
    assert again.wait(10)
    publisher.stop()


# -- the wrapper


@pytest.mark.parametrize("error, kind", [
    (NotFound("x"), "not_found"), (IntegrityError("x"), "integrity"), (UnknownKeyError("x"), "integrity"),
    (StoreUnavailable("x"), "unavailable"), (PermissionDenied("x"), "permission"), (StoreError("x"), "other"),
    (ValueError("x"), "other"),
])
def test_error_kinds_follow_the_error_vocabulary(error, kind):
    assert error_kind(error) == kind
    store = FaultyStore()
    metrics = StorageMetrics()
    area = MeteredArea(ObjectArea(store, Naming()), metrics, OBJECTS)
    uuid = new_uuid()
    area.create(uuid, 1, b"data")
    store.fail("get", error=error)
    with pytest.raises(type(error)):
        area.read(uuid, 1)
    m = metrics.metrics
    assert m.value(ERRORS_TOTAL, operation="read", storage=OBJECTS, kind=kind) == 1
    assert sum(value for name, value in m.samples() if name.startswith(ERRORS_TOTAL)) == 1
    assert m.value(OPERATIONS_TOTAL, operation="read", storage=OBJECTS) == 1
    assert m.value(BYTES_TOTAL, operation="read", storage=OBJECTS) == 0


def test_metered_area_counts_operations_and_bytes_and_keeps_the_area_contract():
    metrics = StorageMetrics()
    inner = ObjectArea(MemoryStore(), Naming())
    area = MeteredArea(inner, metrics, OBJECTS)
    assert repr(area) == repr(inner)
    uuid, data = new_uuid(), os.urandom(10_000)
    location = area.create(uuid, 1, data)
    assert location == inner.locate(uuid, 1)[0].__class__(OBJECTS, inner.naming.key(uuid, 1))
    assert area.read(uuid, 1, location) == data
    assert area.read_range(uuid, 1, 1000, 10) == data[1000:1010]
    with pytest.raises(IntegrityError):
        area.read_range(uuid, 1, 9_995, 10)
    assert len(area.locate(uuid, 1)) == 1
    area.remove(uuid, 1)
    with pytest.raises(NotFound):
        area.read(uuid, 1)
    m = metrics.metrics

    def value(name, operation, **labels):
        return m.value(name, operation=operation, storage=OBJECTS, **labels)

    assert [value(OPERATIONS_TOTAL, op) for op in ("write", "read", "read_range", "delete")] == [1, 2, 2, 1]
    assert [value(BYTES_TOTAL, op) for op in ("write", "read", "read_range")] == [10_000, 10_000, 10]
    assert value(ERRORS_TOTAL, "read_range", kind="integrity") == 1
    assert value(ERRORS_TOTAL, "read", kind="not_found") == 1
    assert value(ERRORS_TOTAL, "write", kind="other") == 0


def test_every_series_exists_from_the_start():
    plain = {name for name, _ in StorageMetrics().metrics.samples()}
    assert len(plain) == 4 + 3 + 4 * 6 and all(name.startswith("orthanc_objstore_") for name in plain)
    hybrid = {name for name, _ in StorageMetrics(hybrid=True, move_outcomes=move.OUTCOMES).metrics.samples()}
    assert len(hybrid) == 2 * (4 + 3 + 4 * 6) + 1 + 4 + 3
    assert FALLBACKS_TOTAL in hybrid and f'{MOVE_FILES_TOTAL}{{outcome="missing"}}' in hybrid
    assert f'{MOVE_BYTES_TOTAL}{{outcome="missing"}}' not in hybrid


# -- through build_area: sides, hybrid fallbacks, move steps


def hybrid_config(tmp_path, mode="WriteToObjectStorage"):
    settings = {"StorageDirectory": str(tmp_path / "storage"),
                "AwsS3Storage": {"BucketName": "b", "Region": "r", "HybridMode": mode}}
    return config.parse(settings)[0]


def test_build_area_meters_each_side_and_counts_hybrid_fallbacks(tmp_path):
    plugin_config = hybrid_config(tmp_path)
    metrics = build.storage_metrics(plugin_config)
    area = build.build_area(plugin_config, store=MemoryStore(), metrics=metrics)
    old, new = new_uuid(), new_uuid()
    area.side("file-system").create(old, 1, b"old file")  # written before the switch to object storage
    area.create(new, 1, b"new file!")
    assert area.read(new, 1) == b"new file!"
    assert area.read(old, 1) == b"old file" and area.read_range(old, 1, 4, 4) == b"file"
    m = metrics.metrics
    assert m.value(FALLBACKS_TOTAL) == 2
    assert m.value(BYTES_TOTAL, operation="write", storage="file-system") == 8
    assert m.value(BYTES_TOTAL, operation="write", storage=OBJECTS) == 9
    assert m.value(BYTES_TOTAL, operation="read", storage="file-system") == 8
    assert m.value(OPERATIONS_TOTAL, operation="read", storage=OBJECTS) == 2  # one hit, one miss
    assert m.value(ERRORS_TOTAL, operation="read", storage=OBJECTS, kind="not_found") == 1
    # the offline tools build the bare areas
    bare = build.build_area(plugin_config, store=MemoryStore())
    assert isinstance(bare.side(OBJECTS), ObjectArea)


def three_instances(area):
    """A patient p of three instances' attachments on the file system; the third one's file is missing."""
    index = FakeIndex()
    index.add("Patient", "p")
    for n in range(3):
        index.attach("p", area.side("file-system"), 1, f"file {n} ".encode() * (n + 1), resource=f"instances/i{n}",
                     stored=n < 2)
    return index


def test_move_steps_are_counted_by_outcome(tmp_path):
    plugin_config = hybrid_config(tmp_path)
    metrics = build.storage_metrics(plugin_config)
    area = build.build_area(plugin_config, store=MemoryStore(), metrics=metrics)
    index = three_instances(area)
    manager = jobs.JobManager(index, area.side, FileJobStore(str(tmp_path / "jobs")), workers=2,
                              on_step=metrics.move_step)
    manager.start()
    try:
        for _ in range(2):  # the second job finds the files already moved: skipped
            job = manager.submit(move.resolve(index, ["p"]), OBJECTS)
            assert job.finished.wait(10)
    finally:
        manager.stop()
    m, sizes = metrics.metrics, [record.size for record in index.all()]
    assert [m.value(MOVE_FILES_TOTAL, outcome=o) for o in ("moved", "skipped", "failed", "missing")] == [2, 2, 0, 2]
    assert m.value(MOVE_BYTES_TOTAL, outcome="moved") == m.value(MOVE_BYTES_TOTAL, outcome="skipped") == sum(sizes[:2])
    assert m.value(BYTES_TOTAL, operation="write", storage=OBJECTS) == sum(sizes[:2])
