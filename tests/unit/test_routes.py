"""The move-storage routes on a fake Orthanc (dict-backed port, recording output): every answer, in milliseconds."""

import hashlib
import threading
import uuid as uuidlib

import pytest
from support.fake_orthanc import FakeOrthancApi, call
from support.faulty_store import FaultyStore
from support.hybrid_world import hybrid_world, object_side
from support.waiting import wait_for

from orthanc_objstore.errors import StoreUnavailable
from orthanc_objstore.jobs import scheduler as jobs
from orthanc_objstore.jobs.journal import FileJobStore
from orthanc_objstore.orthanc_side import routes


class RoutesWorld:
    """A fake Orthanc for the routes: patient a0, study b0, series c0, instances d1 and d2 (a DICOM file each),
    all on the file system of a hybrid world; with ``down_target`` the object storage refuses every write."""

    def __init__(self, folder, down_target=False):
        objects = object_side(FaultyStore().fail("put", error=StoreUnavailable("the bucket is down"))
                              if down_target else None)
        world = hybrid_world("WriteToFileSystem", objects=objects)
        self.objects, self.file_system, self.area = world.objects, world.file_system, world.area
        self.api = FakeOrthancApi({"/patients/a0": {"Studies": ["b0"]}, "/studies/b0": {"Series": ["c0"]},
                                   "/series/c0": {"Instances": ["d1", "d2"]}, "/jobs/core-1": {"ID": "core-1"}})
        self.uuids = []
        for instance in ("d1", "d2"):
            data = f"dicom of {instance}".encode() * 10
            uuid = str(uuidlib.uuid4())
            self.area.create(uuid, 1, data)
            self.uuids.append(uuid)
            self.api.answers.update({
                f"/instances/{instance}": {}, f"/instances/{instance}/attachments?full": {"dicom": 1},
                f"/instances/{instance}/attachments/1/info": {"Uuid": uuid, "CompressedSize": len(data),
                                                              "CompressedMD5": hashlib.md5(data).hexdigest()}})
        self.manager = jobs.JobManager(routes.RestIndex(self.api), world.side, FileJobStore(str(folder)),
                                       workers=2)

    def routes(self, manager=True):
        handlers = routes.MoveStorageRoutes(self.api, self.area, self.manager if manager else None,
                                            "WriteToFileSystem" if manager else "Disabled", lambda: ["core-1"])
        return dict(handlers.routes())


@pytest.fixture
def orthanc(tmp_path):
    world = RoutesWorld(tmp_path)
    world.manager.start()
    yield world
    world.manager.stop()


def test_move_storage_refuses_what_it_cannot_do(orthanc):
    move = orthanc.routes()["/move-storage"]
    assert call(move, "/move-storage", "GET").status == 405
    bad = call(move, "/move-storage", body=b"{")
    assert bad.status == 400 and "not JSON" in bad.json()["Message"]
    unknown = call(move, "/move-storage", body=b'{"Resources": ["a0", "ab-12", "../x"], "TargetStorage": "object-storage"}')
    assert unknown.status == 404 and unknown.json()["UnknownResources"] == ["ab-12", "../x"]
    assert "/../x" not in " ".join(orthanc.api.calls)  # an id of the wrong shape never reaches Orthanc
    off = call(orthanc.routes(manager=False)["/move-storage"], "/move-storage",
               body=b'{"Resources": ["a0"], "TargetStorage": "object-storage"}')
    assert off.status == 400 and "HybridMode 'Disabled'" in off.json()["Message"]
    assert orthanc.manager.jobs() == []


def test_synchronous_move_answers_the_content(orthanc):
    answer = call(orthanc.routes()["/move-storage"], "/move-storage",
                  body=b'{"Resources": ["a0"], "TargetStorage": "object-storage"}')
    assert answer.status == 200
    content = answer.json()
    assert content["Patients"] == ["a0"] and content["MovedFiles"] == content["TotalFiles"] == 2
    assert all(orthanc.objects.locate(uuid, 1) and not orthanc.file_system.locate(uuid, 1) for uuid in orthanc.uuids)


def test_asynchronous_move_and_the_jobs_routes(orthanc):
    table = orthanc.routes()
    answer = call(table["/move-storage"], "/move-storage",
                  body=b'{"Resources": ["d1"], "TargetStorage": "object-storage", "Asynchronous": true}')
    job_id = answer.json()["ID"]
    assert answer.json()["Path"] == f"/jobs/{job_id}"
    assert orthanc.manager.get(job_id).finished.wait(10)
    job_route = next(callback for pattern, callback in table.items() if pattern.startswith("/jobs/(") and
                     not pattern.endswith("cancel"))
    status = call(job_route, f"/jobs/{job_id}", "GET", groups=(job_id,)).json()
    assert (status["State"], status["Progress"], status["Content"]["MovedFiles"]) == ("Success", 100, 1)
    assert call(table["/jobs"], "/jobs", "GET").json() == ["core-1", job_id]
    expanded = call(table["/jobs"], "/jobs", "GET", get={"expand": ""}).json()
    assert [job["ID"] for job in expanded] == ["core-1", job_id]
    cancel = next(callback for pattern, callback in table.items() if pattern.endswith("cancel"))
    assert call(cancel, f"/jobs/{job_id}/cancel", groups=(job_id,)).status == 400  # already finished
    assert call(cancel, "/jobs/objstore-0/cancel", groups=("objstore-0",)).status == 404
    assert call(job_route, "/jobs/objstore-0", "GET", groups=("objstore-0",)).status == 404


def test_a_failed_move_is_a_500_with_the_job_and_the_files_stay(tmp_path):
    world = RoutesWorld(tmp_path, down_target=True)
    world.manager.start()
    try:
        answer = call(world.routes()["/move-storage"], "/move-storage",
                      body=b'{"Resources": ["c0"], "TargetStorage": "object-storage"}')
    finally:
        world.manager.stop()
    body = answer.json()
    assert answer.status == 500 and body["ErrorCode"] == 32 and body["Content"]["FailedFiles"] == 2
    assert "the bucket is down" in body["Content"]["Errors"][0]["Error"]
    assert all(world.file_system.locate(uuid, 1) for uuid in world.uuids)


def test_a_synchronous_move_answers_503_when_orthanc_stops(tmp_path):
    world = RoutesWorld(tmp_path)  # the manager never starts: the job waits
    answers = []
    thread = threading.Thread(target=lambda: answers.append(call(
        world.routes()["/move-storage"], "/move-storage", body=b'{"Resources": ["a0"], "TargetStorage": "object-storage"}')))
    thread.start()
    assert wait_for(lambda: world.manager.jobs(), timeout=10.0, interval=0.01)
    world.manager.stop()
    thread.join(10)
    assert answers[0].status == 503 and answers[0].json()["ID"] == world.manager.jobs()[0].id


def test_storage_location_and_orthanc_unreachable_or_busy(orthanc):
    where = orthanc.routes()["/(patients|studies|series|instances)/([^/]+)/storage-location"]
    answer = call(where, "/series/c0/storage-location", "GET", groups=("series", "c0")).json()
    assert answer["Type"] == "Series" and [a["Storage"] for a in answer["Attachments"]] == ["file-system"] * 2
    assert call(where, "/series/x/storage-location", "GET", groups=("series", "nope")).status == 404
    orthanc.api.down = True
    down = call(where, "/series/c0/storage-location", "GET", groups=("series", "c0"))
    assert down.status == 503 and "connection refused" in down.json()["Message"]
    orthanc.api.down = False
    slots = [orthanc.api.handler_slot() for _ in range(4)]
    for slot in slots:
        slot.__enter__()
    try:
        assert call(where, "/series/c0/storage-location", "GET", groups=("series", "c0")).status == 503
    finally:
        for slot in slots:
            slot.__exit__(None, None, None)



def test_core_jobs_come_from_job_events_and_leave_with_the_history():
    api = FakeOrthancApi({"/jobs/core-1": {"ID": "core-1"}, "/jobs/core-2": {"ID": "core-2"}})
    jobs_seen = routes.CoreJobs(api, None, {4096, 4097})
    for change, job in ((4096, "core-1"), (4096, "core-2"), (1, "a-patient"), (4097, "core-2"), (4096, "gone")):
        jobs_seen.on_change(change, job)
    assert jobs_seen() == ["core-1", "core-2"]  # "gone" is no longer in Orthanc's history
    assert jobs_seen._seen == {"core-1": None, "core-2": None}
    assert routes.CoreJobs(api, lambda: ["x"], set())() == ["x"]  # in process where that is safe
