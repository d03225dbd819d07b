"""Deferred deletions end to end (SPEC LAT-2), on both Orthancs: a deleted study's objects leave the bucket
after Orthanc answered; pending deletions survive a SIGKILL right after the answer and are sent at the next
start; a store that is down only delays them (also test_e2e_failures); ``"DelayedDeletion": false`` deletes
inside the request, as before."""

import json

import pytest
from support.dicom import make_instances
from support.orthanc import HOST_VERSION, wait_for

pytestmark = pytest.mark.orthanc


def upload_study(orthanc, count, seed):
    files = make_instances(count, seed=seed)
    instances = [orthanc.upload(data)["ID"] for data in files]
    return orthanc.get_json(f"/instances/{instances[0]}/study")["ID"]


def test_a_deleted_study_leaves_the_bucket_after_the_answer(backend, orthanc_factory):
    orthanc = orthanc_factory(backend.settings())
    study = upload_study(orthanc, 12, "1.2.826.0.1.3680043.8.498.61")
    deleted = backend.keys()
    other = upload_study(orthanc, 2, "1.2.826.0.1.3680043.8.498.62")
    kept = sorted(set(backend.keys()) - set(deleted))
    assert len(deleted) >= 12 and len(kept) >= 2
    orthanc.delete(f"/studies/{study}", drained=False)
    assert orthanc.get_json("/studies") == [other]
    assert wait_for(lambda: orthanc.deletions()["Pending"] == 0, timeout=30), orthanc.deletions()
    assert backend.keys() == kept  # every object of the study is gone, and nothing else
    orthanc.delete(f"/studies/{other}")
    assert backend.keys() == []
    status = orthanc.deletions()
    assert status["Enabled"] and status["Deleted"] == len(deleted) + len(kept) and status["LastError"] is None
    metrics = orthanc.get("/objstore/metrics-prometheus").decode()
    assert "orthanc_objstore_deletions_pending 0" in metrics


def test_pending_deletions_survive_a_sigkill_and_are_sent_at_the_next_start(backend, orthanc_factory):
    orthanc = orthanc_factory(backend.settings())
    study = upload_study(orthanc, 6, "1.2.826.0.1.3680043.8.498.63")
    stored = backend.keys()
    backend.proxy.mode = "down"  # nothing can be deleted before the kill
    orthanc.delete(f"/studies/{study}", drained=False)
    assert orthanc.get_json("/studies") == []
    assert orthanc.deletions()["Pending"] == len(stored)
    orthanc.kill()  # SIGKILL right after the answer
    assert backend.keys() == stored
    backend.proxy.mode = "pass"
    orthanc.start()
    assert wait_for(lambda: backend.keys() == [], timeout=30), backend.keys()
    # the drainer acknowledges a batch in its journal after the store answered: wait for that too
    assert wait_for(lambda: orthanc.deletions()["Pending"] == 0, timeout=30), orthanc.deletions()
    assert "pending from before the restart" in orthanc.log()


def test_delayed_deletion_off_deletes_inside_the_request(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(s3_backend.settings(DelayedDeletion=False))
    study = upload_study(orthanc, 3, "1.2.826.0.1.3680043.8.498.64")
    orthanc.delete(f"/studies/{study}", drained=False)
    assert s3_backend.keys() == []
    assert json.loads(orthanc.get("/objstore/status"))["DelayedDeletion"] == {"Enabled": False}


@pytest.mark.orthanc_versions(HOST_VERSION)  # the folder is the host's (the chroot has its own file system)
def test_an_unusable_queue_folder_stops_orthanc_with_a_clear_error(s3_backend, orthanc_factory, tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    orthanc = orthanc_factory(s3_backend.settings(DelayedDeletionFolder=str(tmp_path / "not-a-folder" / "q")),
                              start=False)
    with pytest.raises(Exception):  # noqa: B017 - Orthanc refuses to start, whatever the support raises
        orthanc.start()
    assert "DelayedDeletionFolder" in orthanc.log() and "\"DelayedDeletion\": false" in orthanc.log()
