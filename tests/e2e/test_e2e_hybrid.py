"""End to end: hybrid mode, POST /move-storage, move jobs under /jobs and storage-location, through Orthanc."""

import json
import threading

import pytest
from support.attachments import attachment_uuids as attachments
from support.attachments import official_names as object_names
from support.attachments import plugin_problems, storage_files, upload_all
from support.dicom import make_instances
from support.orthanc import HttpError, in_background, wait_for

pytestmark = pytest.mark.orthanc

def hybrid(backend, mode, **options):
    return backend.settings(HybridMode=mode, **options)


def set_mode(orthanc, backend, mode):
    orthanc.config[backend.section]["HybridMode"] = mode


def error_of(call):
    """The status and JSON body of a request expected to fail."""
    with pytest.raises(HttpError) as failure:
        call()
    body = failure.value.body
    return failure.value.status, json.loads(body) if body else None


def wait_job(orthanc, job_id, timeout=120):
    final = wait_for(lambda: (lambda job: job if job["State"] in ("Success", "Failure") else None)(
        orthanc.get_json(f"/jobs/{job_id}")), timeout=timeout)
    assert final, f"job {job_id} did not finish: {orthanc.get_json(f'/jobs/{job_id}')}"
    return final


# The gated tests hold the plugin's store requests at the proxy's gate for as long as they need: the
# plugin's client must not give up meanwhile (the gate, not a timeout, decides when a request goes on).
GATED = {"RequestTimeout": 120}


def moved_files(orthanc, job_id) -> int:
    return orthanc.get_json(f"/jobs/{job_id}")["Content"]["MovedFiles"]


def test_hybrid_reads_from_both_sides(backend, orthanc_factory):
    files = make_instances(4, studies=2, seed="1.2.826.0.1.3680043.8.498.11")
    orthanc = orthanc_factory(hybrid(backend, "WriteToFileSystem"))
    old = upload_all(orthanc, files[:2])
    old_uuids = [uuid for instance in old for uuid in attachments(orthanc, instance)]
    assert backend.keys() == []
    assert storage_files(orthanc) == sorted(uuid for uuid, _ in old_uuids)

    orthanc.stop()
    set_mode(orthanc, backend, "WriteToObjectStorage")
    orthanc.start()
    new = upload_all(orthanc, files[2:])
    new_uuids = [uuid for instance in new for uuid in attachments(orthanc, instance)]
    assert backend.keys() == object_names(new_uuids)
    for instance, data in {**old, **new}.items():
        assert orthanc.get(f"/instances/{instance}/file") == data
        assert orthanc.get_json(f"/instances/{instance}/tags?simplify")["SOPInstanceUID"]

    # deleting removes each file wherever it is, and a file missing on one side is not an error
    for instance in list(old)[:1] + list(new)[:1]:
        orthanc.delete(f"/instances/{instance}")
    per_instance = len(old_uuids) // len(old)  # DICOM file + header through v1 (1.10.1); DICOM file only on 1.13
    assert len(storage_files(orthanc)) == per_instance
    assert len(backend.keys()) == per_instance
    assert plugin_problems(orthanc) == []


def test_move_a_study_both_ways(backend, orthanc_factory):
    files = make_instances(6, series_per_study=2, seed="1.2.826.0.1.3680043.8.498.12")
    settings = hybrid(backend, "WriteToObjectStorage")
    settings["UserContentType"] = {"report": [1025, "text/plain"]}
    orthanc = orthanc_factory(settings)
    stored = upload_all(orthanc, files)
    study = orthanc.get_json("/studies")[0]
    series = orthanc.get_json(f"/studies/{study}")["Series"][0]
    orthanc.put(f"/studies/{study}/attachments/report", b"study-level attachment")
    orthanc.put(f"/series/{series}/attachments/report", b"series-level attachment")
    extra = [(orthanc.get_json(f"/{level}/{rid}/attachments/report/info")["Uuid"], 0)
             for level, rid in (("studies", study), ("series", series))]
    uuids = [uuid for instance in stored for uuid in attachments(orthanc, instance)] + extra
    assert backend.keys() == object_names(uuids)
    assert storage_files(orthanc) == []

    # object storage -> file system, synchronous: the answer is the job's content
    content = orthanc.post_json("/move-storage", {"Resources": [study], "TargetStorage": "file-system"})
    assert content["Studies"] == [study]
    assert content["MovedFiles"] == len(uuids) == content["TotalFiles"]
    assert content["MovedBytes"] == content["TotalBytes"] > 0
    assert (content["SkippedFiles"], content["FailedFiles"], content["MissingFiles"]) == (0, 0, 0)
    assert backend.keys() == []
    assert storage_files(orthanc) == sorted(uuid for uuid, _ in uuids)
    for instance, data in stored.items():
        assert orthanc.get(f"/instances/{instance}/file") == data
    assert orthanc.get(f"/studies/{study}/attachments/report/data") == b"study-level attachment"

    where = orthanc.get_json(f"/studies/{study}/storage-location")
    assert where["Type"] == "Study"
    assert {item["Storage"] for item in where["Attachments"]} == {"file-system"}
    assert sorted(item["Uuid"] for item in where["Attachments"]) == sorted(uuid for uuid, _ in uuids)
    first = where["Attachments"][0]
    assert first["Locations"][0]["Key"] == f"{first['Uuid'][:2]}/{first['Uuid'][2:4]}/{first['Uuid']}"
    assert first["Locations"][0]["Where"].endswith(first["Locations"][0]["Key"])

    # and back, asynchronously, the patient given instead of the study: every file goes back
    patient = orthanc.get_json(f"/studies/{study}")["ParentPatient"]
    answer = orthanc.post_json("/move-storage", {"Resources": [patient], "TargetStorage": "object-storage",
                                                 "Asynchronous": True})
    assert answer["Path"] == f"/jobs/{answer['ID']}"
    job = wait_job(orthanc, answer["ID"])
    assert job["State"] == "Success", job
    assert job["Type"] == "MoveStorage" and job["Progress"] == 100 and job["ErrorCode"] == 0
    assert job["Content"]["MovedFiles"] == len(uuids)
    assert backend.keys() == object_names(uuids)
    assert storage_files(orthanc) == []
    for instance, data in stored.items():
        assert orthanc.get(f"/instances/{instance}/file") == data
    assert orthanc.get(f"/series/{series}/attachments/report/data") == b"series-level attachment"

    # moving again: everything is already on the target
    again = orthanc.post_json("/move-storage", {"Resources": [study], "TargetStorage": "object-storage"})
    assert (again["MovedFiles"], again["SkippedFiles"]) == (0, len(uuids))
    instance = next(iter(stored))
    where = orthanc.get_json(f"/instances/{instance}/storage-location")
    assert {item["Storage"] for item in where["Attachments"]} == {"object-storage"}
    assert where["Attachments"][0]["Locations"][0]["Where"].startswith(backend.url_scheme)
    assert plugin_problems(orthanc) == []


def test_every_bad_input_is_refused_and_moves_nothing(backend, orthanc_factory):
    orthanc = orthanc_factory(hybrid(backend, "WriteToFileSystem"))
    instance = orthanc.upload(make_instances(1, seed="1.2.826.0.1.3680043.8.498.13")[0])["ID"]
    before = storage_files(orthanc)
    good = {"Resources": [instance], "TargetStorage": "object-storage"}
    bad_bodies = [
        (b"not json", "not JSON"),
        ([instance], "JSON object"),
        ({"TargetStorage": "object-storage"}, '"Resources"'),
        ({**good, "Resources": instance}, '"Resources"'),
        ({**good, "Resources": []}, '"Resources"'),
        ({**good, "Resources": [42]}, "non-empty strings"),
        ({"Resources": [instance]}, '"TargetStorage"'),
        ({**good, "TargetStorage": "tape"}, '"TargetStorage"'),
        ({**good, "Asynchronous": "yes"}, '"Asynchronous"'),
        ({**good, "Synchronous": 1}, '"Synchronous"'),
        ({**good, "Priority": "high"}, '"Priority"'),
        ({**good, "Asynchronus": True}, "Asynchronus"),
    ]
    for body, expected in bad_bodies:
        status, answer = error_of(lambda: orthanc.post("/move-storage", body))
        assert status == 400, (body, answer)
        assert expected in answer["Message"], (body, answer)
    for resources in (["0123abcd-not-here"], [instance, "ffffffff-ffffffff-ffffffff-ffffffff-ffffffff"],
                      ["../tools/shutdown"], [""]):
        status, answer = error_of(lambda: orthanc.post("/move-storage", {**good, "Resources": resources}))
        assert status in (400, 404) and "Message" in answer, (resources, answer)
        if resources != [""]:
            assert status == 404 and instance not in answer["UnknownResources"]
    status, _ = error_of(lambda: orthanc.get("/move-storage"))
    assert status == 405
    status, answer = error_of(lambda: orthanc.get("/instances/0123abcd-not-here/storage-location"))
    assert status == 404 and "unknown instance" in answer["Message"]
    status, answer = error_of(lambda: orthanc.get("/jobs/objstore-0123"))
    assert status == 404
    assert storage_files(orthanc) == before and backend.keys() == []
    assert orthanc.get_json("/jobs") == []

    plain = orthanc_factory(backend.settings(), name="not-hybrid")
    status, answer = error_of(lambda: plain.post("/move-storage", good))
    assert status == 400 and "hybrid mode" in answer["Message"]


def test_jobs_are_listed_with_core_jobs_and_can_be_cancelled(backend, orthanc_factory):
    orthanc = orthanc_factory(hybrid(backend, "WriteToFileSystem", **GATED))
    stored = upload_all(orthanc, make_instances(40, seed="1.2.826.0.1.3680043.8.498.14"))
    study = orthanc.get_json("/studies")[0]
    core_job = orthanc.post_json(f"/studies/{study}/archive", {"Asynchronous": True})["ID"]
    wait_job(orthanc, core_job)

    backend.proxy.close_gate()  # the job's store requests go on one by one, when the test lets them
    job_id = orthanc.post_json("/move-storage", {"Resources": [study], "TargetStorage": "object-storage",
                                                 "Asynchronous": True})["ID"]
    assert backend.proxy.release_until(lambda: moved_files(orthanc, job_id) > 0)
    # its next requests wait at the gate: the job cannot end before the cancel
    listed = orthanc.get_json("/jobs")
    assert core_job in listed and job_id in listed
    expanded = {job["ID"]: job for job in orthanc.get_json("/jobs?expand")}
    assert expanded[core_job]["Type"] == "Archive" and expanded[job_id]["Type"] == "MoveStorage"
    assert expanded[job_id]["State"] == "Running"
    assert set(expanded[job_id]) >= {"ID", "Type", "State", "Progress", "CreationTime", "ErrorCode",
                                     "ErrorDescription", "Content"}

    assert orthanc.post_json(f"/jobs/{job_id}/cancel", {}) == {}
    backend.proxy.open_gate()  # the steps in flight finish, no other starts
    job = wait_job(orthanc, job_id)
    assert (job["State"], job["ErrorCode"]) == ("Failure", 37)
    moved = job["Content"]["MovedFiles"]
    assert 0 < moved < job["Content"]["TotalFiles"]
    # every file is on exactly one side and readable
    assert len(backend.keys()) + len(storage_files(orthanc)) == job["Content"]["TotalFiles"]
    assert len(backend.keys()) == moved
    for instance, data in stored.items():
        assert orthanc.get(f"/instances/{instance}/file") == data
    status, answer = error_of(lambda: orthanc.post(f"/jobs/{job_id}/cancel", {}))
    assert status == 400 and "finished" in answer["Message"]


def test_killed_during_a_move_resumes_without_loss_or_duplicates(backend, orthanc_factory):
    orthanc = orthanc_factory(hybrid(backend, "WriteToFileSystem", **GATED))
    stored = upload_all(orthanc, make_instances(50, studies=2, seed="1.2.826.0.1.3680043.8.498.15"))
    uuids = [uuid for instance in stored for uuid in attachments(orthanc, instance)]
    studies = orthanc.get_json("/studies")

    backend.proxy.close_gate()  # the job's store requests go on one by one, when the test lets them
    job_id = orthanc.post_json("/move-storage", {"Resources": studies, "TargetStorage": "object-storage",
                                                 "Asynchronous": True})["ID"]
    assert backend.proxy.release_until(lambda: moved_files(orthanc, job_id) >= 10)
    orthanc.kill()  # with the job's next requests held at the gate
    backend.proxy.open_gate(drop_held=True)  # what the killed Orthanc had sent never reaches the store
    on_target_at_kill = len(backend.keys())
    assert 10 <= on_target_at_kill < len(uuids)

    orthanc.start()
    job = wait_job(orthanc, job_id)
    assert job["State"] == "Success", job
    content = job["Content"]
    assert content["TotalFiles"] == len(uuids)
    assert content["MovedFiles"] + content["SkippedFiles"] == len(uuids)
    assert content["MovedBytes"] + content["SkippedBytes"] == content["TotalBytes"]
    assert (content["FailedFiles"], content["MissingFiles"]) == (0, 0)
    # exactly one copy of each file, on the target
    assert backend.keys() == object_names(uuids)
    assert storage_files(orthanc) == []
    for instance, data in stored.items():
        assert orthanc.get(f"/instances/{instance}/file") == data
    assert "resumes" in orthanc.log()


def test_uploads_and_reads_during_a_move(backend, orthanc_factory):
    orthanc = orthanc_factory(hybrid(backend, "WriteToFileSystem", **GATED))
    files = make_instances(50, seed="1.2.826.0.1.3680043.8.498.16")
    stored = upload_all(orthanc, files[:40])
    study = orthanc.get_json("/studies")[0]
    backend.proxy.mode, backend.proxy.delay = "slow", 0.02
    backend.proxy.close_gate()  # the job waits at the gate until the readers have read every file once
    job_id = orthanc.post_json("/move-storage", {"Resources": [study], "TargetStorage": "object-storage",
                                                 "Asynchronous": True})["ID"]
    failures, reads = [], [0]

    def reader():
        while orthanc.get_json(f"/jobs/{job_id}")["State"] not in ("Success", "Failure"):
            for instance, data in stored.items():
                try:
                    if orthanc.get(f"/instances/{instance}/file") != data:
                        failures.append(f"{instance}: different bytes")
                    reads[0] += 1
                except HttpError as exc:
                    failures.append(f"{instance}: {exc}")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        new = upload_all(orthanc, files[40:])
        assert wait_for(lambda: reads[0] >= len(stored) or failures, timeout=120), "the readers did not read"
        assert orthanc.get_json(f"/jobs/{job_id}")["State"] == "Running"  # read while the job runs
    finally:
        backend.proxy.open_gate()
    for thread in threads:
        thread.join(300)
    backend.proxy.mode = "pass"
    job = wait_job(orthanc, job_id)
    assert job["State"] == "Success", job
    assert failures == []
    for instance, data in {**stored, **new}.items():
        assert orthanc.get(f"/instances/{instance}/file") == data
    # every file is on exactly one side: the job's files on the target, the others where they were written
    all_uuids = [uuid for instance in {**stored, **new} for uuid, _ in attachments(orthanc, instance)]
    on_disk, in_bucket = set(storage_files(orthanc)), {key.split(".")[0] for key in backend.keys()}
    assert sorted(on_disk | in_bucket) == sorted(all_uuids) and not on_disk & in_bucket
    assert len(backend.keys()) == job["Content"]["MovedFiles"]
    assert plugin_problems(orthanc) == []


def test_stopping_during_a_synchronous_move_answers_503_and_resumes(backend, orthanc_factory):
    orthanc = orthanc_factory(hybrid(backend, "WriteToFileSystem", **GATED))
    stored = upload_all(orthanc, make_instances(30, seed="1.2.826.0.1.3680043.8.498.17"))
    study = orthanc.get_json("/studies")[0]
    backend.proxy.close_gate()  # the move's writes wait at the gate: it is running when SIGTERM comes
    answers = []

    def synchronous_move():
        try:
            answers.append(orthanc.post("/move-storage", {"Resources": [study], "TargetStorage": "object-storage"}))
        except HttpError as exc:
            answers.append(exc)

    thread = threading.Thread(target=synchronous_move)
    thread.start()
    try:
        assert backend.proxy.wait_waiting(1), "the move never wrote"
        stopper, _ = in_background(orthanc.stop)  # SIGTERM: Orthanc must not hang on the waiting request
        thread.join(60)  # answered while the job's writes are still held
    finally:
        backend.proxy.open_gate()  # then the writes in flight finish, and Orthanc exits
    stopper.join(60)
    assert not stopper.is_alive() and orthanc.process is None
    assert len(answers) == 1 and isinstance(answers[0], HttpError) and answers[0].status == 503, answers
    job_id = json.loads(answers[0].body)["ID"]

    orthanc.start()
    job = wait_job(orthanc, job_id)
    assert job["State"] == "Success", job
    assert storage_files(orthanc) == [] and len(backend.keys()) == job["Content"]["TotalFiles"]
    for instance, data in stored.items():
        assert orthanc.get(f"/instances/{instance}/file") == data


def test_switching_hybrid_mode_keeps_every_file_readable(backend, orthanc_factory):
    """Disabled → WriteToFileSystem → WriteToObjectStorage → move everything → Disabled, one Orthanc, its
    files read after every step. On Orthanc ≥ 1.12.8 the files written in each mode carry custom data
    naming where they went, which Orthanc hands back on every later read and remove, whatever the mode."""
    files = make_instances(9, studies=3, seed="1.2.826.0.1.3680043.8.498.18")
    orthanc = orthanc_factory(hybrid(backend, "Disabled"))
    stored = upload_all(orthanc, files[:3])
    in_bucket = [uuid for instance in stored for uuid in attachments(orthanc, instance)]
    assert backend.keys() == object_names(in_bucket) and storage_files(orthanc) == []

    def restart_and_read_everything(mode):
        orthanc.stop()
        set_mode(orthanc, backend, mode)
        orthanc.start()
        read_everything()

    def read_everything():
        for instance, data in stored.items():
            assert orthanc.get(f"/instances/{instance}/file") == data, instance
            assert orthanc.get_json(f"/instances/{instance}/tags?simplify")["SOPInstanceUID"], instance

    restart_and_read_everything("WriteToFileSystem")
    on_disk = upload_all(orthanc, files[3:6])
    stored.update(on_disk)
    read_everything()
    assert storage_files(orthanc) == sorted(uuid for instance in on_disk for uuid, _ in attachments(orthanc, instance))
    assert backend.keys() == object_names(in_bucket)

    restart_and_read_everything("WriteToObjectStorage")
    newest = upload_all(orthanc, files[6:])
    stored.update(newest)
    read_everything()
    in_bucket += [uuid for instance in newest for uuid in attachments(orthanc, instance)]
    assert backend.keys() == object_names(in_bucket)

    everything = [uuid for instance in stored for uuid in attachments(orthanc, instance)]
    content = orthanc.post_json("/move-storage", {"Resources": orthanc.get_json("/patients"),
                                                  "TargetStorage": "object-storage"})
    assert (content["MovedFiles"], content["SkippedFiles"]) == (len(everything) - len(in_bucket), len(in_bucket))
    assert (content["FailedFiles"], content["MissingFiles"]) == (0, 0)
    assert backend.keys() == object_names(everything) and storage_files(orthanc) == []
    read_everything()

    restart_and_read_everything("Disabled")
    # still removable wherever they were written: one instance of each mode
    for instance in (list(stored)[0], list(on_disk)[0], list(newest)[0]):
        gone = attachments(orthanc, instance)
        orthanc.delete(f"/instances/{instance}")
        del stored[instance]
        everything = [item for item in everything if item not in gone]
    assert backend.keys() == object_names(everything)
    read_everything()
    assert plugin_problems(orthanc) == []
