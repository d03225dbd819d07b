"""End to end: cold storage classes (S3 GLACIER on moto, Azure Archive on Azurite) through Orthanc (SPEC COLD-1).

Both emulators restore at once (see ``tests/providers/test_cold_storage.py``), so a restore job here
ends at its first look; the polling with backoff, resuming and cancelling are covered in the unit tier.
"""

import pytest
from support.orthanc import NEWEST_VERSION, HttpError, wait_for

pytestmark = pytest.mark.orthanc

COLD = {"s3": {"StorageClass": "GLACIER"}, "azure": {"AccessTier": "Archive"}}
CLASS = {"s3": "GLACIER", "azure": "Archive"}


@pytest.fixture(params=["s3", "azure"])
def cold_backend(request):
    return request.getfixturevalue(f"{request.param}_backend")


def refused(orthanc, path):
    with pytest.raises(HttpError) as caught:
        orthanc.get(path)
    return caught.value


def test_cold_reads_are_refused_explained_counted_and_restored(cold_backend, orthanc_factory, dicom_files,
                                                                 orthanc_version):
    name = cold_backend.name
    orthanc = orthanc_factory(cold_backend.settings(**COLD[name]))
    option = "StorageClass" if name == "s3" else "AccessTier"
    assert f"{cold_backend.section}.{option} is {CLASS[name]}" in orthanc.log()
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    study = orthanc.get_json(f"/instances/{instance}/study")["ID"]

    error = refused(orthanc, f"/instances/{instance}/file")
    uuid = orthanc.get_json(f"/instances/{instance}/attachments/dicom/info")["Uuid"]
    if orthanc_version == NEWEST_VERSION:
        assert error.status == 503
        assert b"cold storage class" in error.body and b"/objstore/restore" in error.body
    else:
        assert error.status == 500  # the v1 API can only say "plugin error"
    assert wait_for(lambda: f"attachment {uuid} of type 1 failed" in orthanc.log(), timeout=10)
    line = next(line for line in orthanc.log().splitlines() if f"attachment {uuid} of type 1 failed" in line)
    assert CLASS[name] in line and "POST /objstore/restore" in line and uuid in line
    metrics = orthanc.get("/objstore/metrics-prometheus").decode()
    refusals = [row for row in metrics.splitlines() if 'kind="needs_restore"' in row and 'operation="read' in row]
    assert sum(int(row.rsplit(" ", 1)[1]) for row in refusals) >= 1, refusals

    location = orthanc.get_json(f"/studies/{study}/storage-location")["Attachments"]
    states = {(item["StorageClass"], item["Restore"]) for item in location}
    assert location and states == {(CLASS[name], "not-restored")}

    summary = orthanc.post_json("/objstore/restore", {"Resources": [study], "Days": 1})
    assert summary["TotalFiles"] == len(location)
    assert summary["RestoreRequestedFiles"] == len(location) and summary["AlreadyReadableFiles"] == 0
    assert summary["FailedFiles"] == 0 and summary["MissingFiles"] == 0
    assert orthanc.get(f"/instances/{instance}/file") == dicom_files[0][1]
    after = orthanc.get_json(f"/instances/{instance}/storage-location")["Attachments"]
    assert all(item["Restore"] in ("restored", "not-needed") for item in after), after
    again = orthanc.post_json("/objstore/restore", {"Resources": [instance]})
    assert again["AlreadyReadableFiles"] == again["TotalFiles"] and again["RestoreRequestedFiles"] == 0


def test_restore_job_under_jobs_and_bad_requests(s3_backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory(s3_backend.settings(StorageClass="DEEP_ARCHIVE"))
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    with pytest.raises(HttpError) as caught:
        orthanc.post("/objstore/restore", b'{"Resources": ["' + instance.encode() + b'"], "Tier": "High"}')
    assert caught.value.status == 400 and b"Standard, Bulk, Expedited" in caught.value.body
    with pytest.raises(HttpError) as caught:
        orthanc.post("/objstore/restore", b'{"Resources": ["0000"]}')
    assert caught.value.status == 404

    answer = orthanc.post_json("/objstore/restore", {"Resources": [instance], "Asynchronous": True, "Tier": "Bulk"})
    assert answer["ID"] in orthanc.get_json("/jobs")
    assert wait_for(lambda: orthanc.get_json(answer["Path"])["State"] == "Success", timeout=60)
    status = orthanc.get_json(answer["Path"])
    assert status["Type"] == "ObjstoreRestore" and status["Progress"] == 100
    assert status["Content"]["ReadableFiles"] == status["Content"]["TotalFiles"] >= 1
    assert status["Content"]["Tier"] == "Bulk" and status["Content"]["Instances"] == [instance]
    assert orthanc.get(f"/instances/{instance}/file") == dicom_files[0][1]
    orthanc.restart()  # a finished job is kept across a restart
    assert orthanc.get_json(answer["Path"])["State"] == "Success"


def test_restore_on_read_starts_the_restore(s3_backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory(s3_backend.settings(StorageClass="GLACIER", RestoreOnRead=True, RestoreTier="Expedited"))
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    refused(orthanc, f"/instances/{instance}/file")  # refused, and its restore asked for (moto: done at once)
    assert wait_for(lambda: "RestoreOnRead: asked for the restore" in orthanc.log(), timeout=10)
    assert orthanc.get(f"/instances/{instance}/file") == dicom_files[0][1]


def test_a_move_of_a_study_in_glacier_says_so(s3_backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory(s3_backend.settings(StorageClass="GLACIER", HybridMode="WriteToObjectStorage"))
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    study = orthanc.get_json(f"/instances/{instance}/study")["ID"]
    with pytest.raises(HttpError) as caught:
        orthanc.post("/move-storage", b'{"Resources": ["' + study.encode() + b'"], "TargetStorage": "file-system"}')
    assert caught.value.status == 500
    assert b"GLACIER" in caught.value.body and b"/objstore/restore" in caught.value.body
    assert orthanc.get_json(f"/studies/{study}/storage-location")["Attachments"][0]["Storage"] == "object-storage"
    orthanc.post_json("/objstore/restore", {"Resources": [study]})
    content = orthanc.post_json("/move-storage", {"Resources": [study], "TargetStorage": "file-system"})
    assert content["MovedFiles"] == content["TotalFiles"] >= 1
    assert orthanc.get(f"/instances/{instance}/file") == dicom_files[0][1]
