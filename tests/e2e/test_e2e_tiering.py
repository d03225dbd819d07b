"""End to end: automatic tiering (the Tiering section) through a real Orthanc, and with two replicas."""

import pytest
from support.attachments import attachment_uuids as attachments
from support.attachments import official_names as object_names
from support.attachments import plugin_problems, storage_files, upload_all
from support.dicom import make_instances
from support.orthanc import PYTHON_PLUGIN, wait_for
from support.postgres import INDEX_PLUGIN, PostgresServer

pytestmark = pytest.mark.orthanc


def tiering(after, check_every="1s", **options):
    return {"MoveToObjectStorageAfter": after, "CheckEvery": check_every, **options}


def passes(orthanc) -> int:
    return orthanc.log().count("tiering pass:")


def uuids_of(orthanc, instances) -> list[tuple[str, int]]:
    return [uuid for instance in instances for uuid in attachments(orthanc, instance)]


def test_an_old_study_moves_by_itself_and_a_new_one_stays(s3_backend, orthanc_factory):
    files = make_instances(4, studies=2, seed="1.2.826.0.1.3680043.8.498.31")
    orthanc = orthanc_factory(s3_backend.settings(HybridMode="WriteToFileSystem", Tiering=tiering("8s")))
    old = upload_all(orthanc, files[:2])
    old_uuids = uuids_of(orthanc, old)
    assert storage_files(orthanc) == sorted(uuid for uuid, _ in old_uuids) and s3_backend.keys() == []
    assert wait_for(lambda: storage_files(orthanc) == [], timeout=60), orthanc.log_tail()
    assert s3_backend.keys() == object_names(old_uuids)

    # a new study stays: with a threshold no pass can reach while the test runs (not 8 s minus a margin)
    orthanc.stop()
    orthanc.config[s3_backend.section]["Tiering"] = tiering("1d")
    orthanc.start()
    new = upload_all(orthanc, files[2:])
    new_uuids = uuids_of(orthanc, new)
    seen = passes(orthanc)
    assert wait_for(lambda: passes(orthanc) >= seen + 2, timeout=30), orthanc.log_tail()
    assert storage_files(orthanc) == sorted(uuid for uuid, _ in new_uuids)  # recent: still on the file system
    new_studies = len({orthanc.get_json(f"/instances/{instance}/study")["ID"] for instance in new})
    assert f"already moved, {new_studies} recent), 0 moved" in orthanc.log().rsplit("tiering pass:", 1)[1]
    for instance, data in {**old, **new}.items():
        assert orthanc.get(f"/instances/{instance}/file") == data

    jobs = [orthanc.get_json(f"/jobs/{job}") for job in orthanc.get_json("/jobs") if job.startswith("objstore-")]
    assert jobs and all(job["Priority"] == -100 and job["State"] == "Success" for job in jobs)

    # a restart with the 8 s threshold: what was moved is remembered, the new study moves once it is old
    orthanc.stop()
    orthanc.config[s3_backend.section]["Tiering"] = tiering("8s")
    orthanc.start()
    assert wait_for(lambda: storage_files(orthanc) == [], timeout=60), orthanc.log_tail()
    assert s3_backend.keys() == object_names(old_uuids + new_uuids)
    assert wait_for(lambda: "tiering pass: 2 studies examined (2 already moved, 0 recent)" in orthanc.log(), timeout=30)
    for instance, data in {**old, **new}.items():
        assert orthanc.get(f"/instances/{instance}/file") == data
    assert plugin_problems(orthanc) == []


def test_zero_seconds_in_write_to_object_storage_empties_the_file_system(s3_backend, orthanc_factory):
    files = make_instances(6, studies=3, seed="1.2.826.0.1.3680043.8.498.32")
    orthanc = orthanc_factory(s3_backend.settings(HybridMode="WriteToFileSystem"))
    stored = upload_all(orthanc, files[:4])
    on_file_system = uuids_of(orthanc, stored)
    orthanc.stop()
    section = orthanc.config[s3_backend.section]
    section.update(HybridMode="WriteToObjectStorage", Tiering=tiering("0s", "2s", MaxConcurrentFiles=2))
    orthanc.start()
    newer = upload_all(orthanc, files[4:])
    assert wait_for(lambda: storage_files(orthanc) == [], timeout=60), orthanc.log_tail()
    assert s3_backend.keys() == object_names(on_file_system + uuids_of(orthanc, newer))
    for instance, data in {**stored, **newer}.items():
        assert orthanc.get(f"/instances/{instance}/file") == data
    assert plugin_problems(orthanc) == []


def test_tiering_without_hybrid_mode_stops_orthanc(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(s3_backend.settings(Tiering=tiering("30x")), start=False)
    orthanc.start(expect_failure=True)
    log = orthanc.log()
    assert "AwsS3Storage.Tiering: only works in hybrid mode" in log
    assert "AwsS3Storage.Tiering.MoveToObjectStorageAfter: '30x' is not a duration" in log


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


def test_two_replicas_only_the_designated_one_moves(s3_backend, postgres, orthanc_factory):
    """One index, one bucket, one shared StorageDirectory: tiering enabled on replica-a only."""
    settings = {**postgres.settings(Database=postgres.create_database()), "Plugins": [PYTHON_PLUGIN, INDEX_PLUGIN]}
    replicas = []
    for name, enabled in (("replica-a", True), ("replica-b", False)):
        options = s3_backend.settings(HybridMode="WriteToFileSystem", Tiering=tiering("5s", Enabled=enabled))
        replicas.append(orthanc_factory({**settings, **options, "DatabaseServerIdentifier": name}, name=name,
                                        start=False))
    first, second = replicas
    second.config["StorageDirectory"] = first.config["StorageDirectory"]  # one shared volume
    for replica in replicas:
        replica.start()
    files = make_instances(6, studies=3, seed="1.2.826.0.1.3680043.8.498.33")
    stored = {**upload_all(first, files[:3]), **upload_all(second, files[3:])}
    uuids = uuids_of(first, stored)
    assert wait_for(lambda: s3_backend.keys() == object_names(uuids), timeout=90), first.log_tail()
    # the moves' source copies are removed through the deferred deletions' queue: once it has drained
    assert wait_for(lambda: storage_files(first) == [], timeout=30), storage_files(first)
    assert passes(first) > 0 and passes(second) == 0
    assert [job for job in second.get_json("/jobs") if job.startswith("objstore-")] == []
    for replica in replicas:
        for instance, data in stored.items():
            assert replica.get(f"/instances/{instance}/file") == data
        assert plugin_problems(replica) == []
