"""The MoveStorage step machine on memory stores and a fake Orthanc index: request, plan, steps, jobs, crashes."""

import hashlib
import json
import threading
import time

import pytest
from support.faulty_store import FaultyStore
from support.hybrid_world import hybrid_world, patient_index

from orthanc_objstore.areas.contract import ObjectArea
from orthanc_objstore.errors import IntegrityError, StoreUnavailable
from orthanc_objstore.jobs import scheduler as jobs
from orthanc_objstore.jobs import steps as move
from orthanc_objstore.jobs.journal import FileJobStore
from orthanc_objstore.orthanc_side import routes


@pytest.fixture
def world():
    hybrid = hybrid_world("WriteToFileSystem")
    index = patient_index(hybrid.area)  # everything starts on the file system
    return hybrid.area, index, hybrid.objects, hybrid.file_system


# -- request


@pytest.mark.parametrize("body, problem", [
    (b"{", "not JSON"), (b"\xff", "not JSON"), (b"[]", "JSON object"),
    (b'{"TargetStorage": "file-system"}', "Resources"), (b'{"Resources": [], "TargetStorage": "file-system"}',
                                                         "non-empty array"),
    (b'{"Resources": "x", "TargetStorage": "file-system"}', "Resources"),
    (b'{"Resources": [null], "TargetStorage": "file-system"}', "non-empty strings"),
    (b'{"Resources": ["x"]}', "TargetStorage"), (b'{"Resources": ["x"], "TargetStorage": "disk"}', "TargetStorage"),
    (b'{"Resources": ["x"], "TargetStorage": "file-system", "Asynchronous": 1}', "Asynchronous"),
    (b'{"Resources": ["x"], "TargetStorage": "file-system", "Priority": true}', "Priority"),
    (b'{"Resources": ["x"], "TargetStorage": "file-system", "Target": 1}', "unknown field"),
])
def test_bad_requests_say_what_is_wrong(body, problem):
    with pytest.raises(routes.BadRequest, match=problem):
        routes.parse_request(body)


def test_request_defaults_and_synonyms():
    parsed = routes.parse_request(b'{"Resources": ["a", "b", "a"], "TargetStorage": "object-storage"}')
    assert (parsed.resources, parsed.asynchronous, parsed.priority) == (["a", "b"], False, 0)
    assert routes.parse_request(b'{"Resources": ["a"], "TargetStorage": "file-system", "Synchronous": false}'
                              ).asynchronous
    assert not routes.parse_request(b'{"Resources": ["a"], "TargetStorage": "file-system", "Synchronous": false, '
                                  b'"Asynchronous": false}').asynchronous


# -- plan and steps


def test_resolve_and_plan_cover_every_level(world):
    area, index, *_ = world
    assert move.resolve(index, ["i1", "s1"]) == {"Instances": ["i1"], "Studies": ["s1"]}
    with pytest.raises(LookupError) as unknown:
        move.resolve(index, ["i1", "nope", ""])
    assert unknown.value.args[0] == ["nope", ""]
    planned = move.plan(index, {"Patients": ["p1"], "Instances": ["i1"]})
    assert sorted(a.uuid for a in planned) == sorted(a.uuid for a in index.all())  # each once
    assert {a.resource.split("/")[0] for a in planned} == {"patients", "studies", "series", "instances"}


def test_step_outcomes(world):
    area, index, objects, file_system = world
    a, b, c, d = index.records["i1"] + index.records["i2"]
    assert move.move_attachment(a, file_system, objects) == move.MOVED
    assert objects.locate(a.uuid, a.content_type) and not file_system.locate(a.uuid, a.content_type)
    assert move.move_attachment(a, file_system, objects) == move.SKIPPED  # already on the target

    objects.create(b.uuid, b.content_type, file_system.read(b.uuid, b.content_type))  # interrupted move
    assert move.move_attachment(b, file_system, objects) == move.MOVED
    assert not file_system.locate(b.uuid, b.content_type)

    objects.create(c.uuid, c.content_type, b"half-written garbage")  # a wrong copy on the target is replaced
    assert move.move_attachment(c, file_system, objects) == move.MOVED
    assert objects.read(c.uuid, c.content_type) == area.read(c.uuid, c.content_type)

    file_system.remove(d.uuid, d.content_type)
    assert move.move_attachment(d, file_system, objects) == move.MISSING


def test_a_damaged_source_or_failed_write_keeps_the_source(world):
    area, index, objects, file_system = world
    a, b = index.records["i3"]
    file_system.create(a.uuid, a.content_type, b"tampered")
    with pytest.raises(IntegrityError, match="size"):
        move.move_attachment(a, file_system, objects)
    assert objects.locate(a.uuid, a.content_type) == []

    down = ObjectArea(FaultyStore().fail("put"), objects.naming)
    with pytest.raises(StoreUnavailable):
        move.move_attachment(b, file_system, down)
    assert file_system.locate(b.uuid, b.content_type)


# -- jobs


def manager_for(area, index, tmp_path, workers=4):
    return jobs.JobManager(index, area.side, FileJobStore(str(tmp_path / "jobs")), workers=workers)


def copies(objects, file_system, attachment):
    return (len(objects.locate(attachment.uuid, attachment.content_type)),
            len(file_system.locate(attachment.uuid, attachment.content_type)))


def test_a_job_moves_everything_and_reports_counts(world, tmp_path):
    area, index, objects, file_system = world
    manager = manager_for(area, index, tmp_path)
    manager.start()
    try:
        job = manager.submit(move.resolve(index, ["p1"]), "object-storage")
        assert job.finished.wait(10)
        status = routes.job_status(job)
    finally:
        manager.stop()
    assert (status["State"], status["Progress"], status["ErrorCode"], status["Type"]) == ("Success", 100, 0,
                                                                                          "MoveStorage")
    content = status["Content"]
    assert content["Patients"] == ["p1"] and content["TargetStorage"] == "object-storage"
    assert content["MovedFiles"] == content["TotalFiles"] == len(index.all()) == 16
    assert content["MovedBytes"] == content["TotalBytes"] == sum(a.size for a in index.all())
    assert all(copies(objects, file_system, a) == (1, 0) for a in index.all())
    assert file_system.store.keys() == []

    reloaded = manager_for(area, index, tmp_path)  # a finished job is still listed after a restart
    reloaded.start()
    reloaded.stop()
    assert routes.job_status(reloaded.get(job.id))["Content"]["MovedFiles"] == 16


@pytest.mark.parametrize("crash_point", ["after write", "after delete", "after journal", "cut journal line"])
def test_a_crash_at_any_point_loses_nothing_and_moves_nothing_twice(world, tmp_path, crash_point):
    """Rebuilds what a killed Orthanc leaves behind at each point of a step, then resumes."""
    area, index, objects, file_system = world
    job_store = FileJobStore(str(tmp_path / "jobs"))
    job = move.MoveJob("objstore-1", "object-storage", {"Patients": ["p1"]})
    job.plan = move.plan(index, job.groups)
    job.state = move.RUNNING
    job_store.save(job.id, job.document())
    for step in range(5):  # five steps fully done and journaled
        attachment = job.plan[step]
        move.move_attachment(attachment, file_system, objects)
        job_store.append(job.id, job.record(step, move.MOVED))
    crashed = job.plan[5]
    data = file_system.read(crashed.uuid, crashed.content_type)
    objects.create(crashed.uuid, crashed.content_type, data)  # written to the target...
    if crash_point != "after write":
        file_system.remove(crashed.uuid, crashed.content_type)  # ...and deleted from the source
    if crash_point == "after journal":
        job_store.append(job.id, job.record(5, move.MOVED))
    job_store.close(job.id)
    if crash_point == "cut journal line":
        with open(tmp_path / "jobs" / "objstore-1.journal", "a") as journal:
            journal.write('{"i": 5, "o": "mo')

    manager = jobs.JobManager(index, area.side, job_store, workers=3)
    manager.start()
    try:
        resumed = manager.get("objstore-1")
        assert resumed.finished.wait(10)
        content = resumed.content()
    finally:
        manager.stop()
    assert resumed.state == move.SUCCESS
    assert content["MovedFiles"] + content["SkippedFiles"] == len(job.plan)
    assert content["SkippedFiles"] == (1 if crash_point in ("after delete", "cut journal line") else 0)
    assert all(copies(objects, file_system, a) == (1, 0) for a in index.all())
    for attachment in index.all():
        assert hashlib.md5(objects.read(attachment.uuid, attachment.content_type)).hexdigest() == attachment.md5


class Gate(ObjectArea):
    """A target that blocks each write until the test opens the gate."""

    def __init__(self, inner):
        super().__init__(inner.store, inner.naming, inner.storage_name)
        self.opened = threading.Event()
        self.writes = threading.Semaphore(0)

    def create(self, uuid, content_type, data):
        self.writes.release()
        self.opened.wait(10)
        super().create(uuid, content_type, data)


def test_cancel_and_stop(world, tmp_path):
    area, index, objects, file_system = world
    gate = Gate(objects)
    sides_ = {"object-storage": gate, "file-system": file_system}
    manager = jobs.JobManager(index, sides_.get, FileJobStore(str(tmp_path / "jobs")), workers=2)
    manager.start()
    try:
        job = manager.submit({"Patients": ["p1"]}, "object-storage")
        assert gate.writes.acquire(timeout=10)
        assert manager.cancel(job.id)
        gate.opened.set()
        assert job.finished.wait(10)
        assert (job.state, job.error[0]) == (move.FAILURE, 37)
        assert not manager.cancel(job.id) and not manager.cancel("objstore-unknown")
        assert 0 < job.content()["MovedFiles"] < 16
        assert all(sum(copies(objects, file_system, a)) == 1 for a in index.all())

        gate.opened.clear()
        while gate.writes.acquire(blocking=False):
            pass  # the cancelled job's workers entered the gate more than once: count the second job's only
        second = manager.submit({"Patients": ["p1"]}, "object-storage")
        assert gate.writes.acquire(timeout=10)
    finally:
        # the gate opens only once the manager is stopping: the steps in flight then finish, none starts
        stopper = threading.Thread(target=manager.stop)
        stopper.start()
        while not manager.stopping and stopper.is_alive():
            time.sleep(0.005)
        gate.opened.set()
        stopper.join(30)
    assert manager.stopping and not stopper.is_alive()
    assert second.state == move.PENDING  # Orthanc stopping leaves it for the next start
    document = json.loads((tmp_path / "jobs" / f"{second.id}.json").read_text())
    assert document["State"] == move.RUNNING

    restarted = jobs.JobManager(index, area.side, FileJobStore(str(tmp_path / "jobs")))
    restarted.start()
    try:
        resumed = restarted.get(second.id)
        assert resumed.finished.wait(10) and resumed.state == move.SUCCESS
    finally:
        restarted.stop()
    assert all(copies(objects, file_system, a) == (1, 0) for a in index.all())


def test_storage_locations(world):
    area, index, objects, file_system = world
    move.move_attachment(index.records["i1"][0], file_system, objects)
    answer = routes.storage_locations(index, area, "Series", "se1")
    assert len(answer) == 7  # the series' own attachment and two per instance
    by_uuid = {item["Uuid"]: item for item in answer}
    moved = by_uuid[index.records["i1"][0].uuid]
    assert moved["Storage"] == "object-storage" and moved["Locations"][0]["Key"].endswith(".dcm")
    stayed = by_uuid[index.records["i2"][1].uuid]
    assert stayed["Storage"] == "file-system" and stayed["ContentType"] == 3
