"""Scale-out, for real and without Docker: two Orthancs sharing one PostgreSQL index and one bucket.

This is the topology of docker/docker-compose.yml (two replicas behind a proxy), built from Debian's
packages: PostgreSQL on 127.0.0.1, Debian's orthanc-postgresql index plugin (``Lock: false`` so that
several Orthancs share the database) and this plugin on one moto bucket. Whatever one replica
writes, the other reads, archives and deletes; the bucket always holds exactly the objects that the
shared index references.
"""

import io
import os
import threading
import zipfile

import pytest
from support.attachments import attachment_uuids, official_names
from support.dicom import make_instances
from support.orthanc import PYTHON_PLUGIN, HttpError, in_background
from support.postgres import INDEX_PLUGIN, PostgresServer
from support.servers import FaultProxy

from orthanc_objstore.areas.adoption import REGISTRY_FOLDER

pytestmark = pytest.mark.orthanc


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def index(postgres):
    """A fresh, empty database for each test (the server is shared by the module)."""
    return postgres.settings(Database=postgres.create_database())


@pytest.fixture
def replicas(s3_backend, index, orthanc_factory):
    """Two Orthanc replicas: same bucket, same PostgreSQL index, nothing else in common."""
    settings = {**s3_backend.settings(), **index, "Plugins": [PYTHON_PLUGIN, INDEX_PLUGIN]}
    # Each replica keeps its own jobs and global properties in the shared database under its own name.
    first = orthanc_factory({**settings, "DatabaseServerIdentifier": "replica-a"}, name="replica-a")
    second = orthanc_factory({**settings, "DatabaseServerIdentifier": "replica-b"}, name="replica-b")
    for replica in (first, second):
        log = replica.log()
        assert "Registering plugin 'postgresql-index'" in log and "orthanc-objstore" in log, replica.log_tail()
        assert not os.path.exists(replica.host_path(replica.config["IndexDirectory"]))  # no SQLite index: PostgreSQL serves it
    return first, second


def distinct_instances(dicom: bytes, count: int, prefix: str) -> list[bytes]:
    """``count`` copies of one DICOM file, each a different instance of the same study."""
    import pydicom
    from pydicom.uid import generate_uid

    copies = []
    for number in range(count):
        dataset = pydicom.dcmread(io.BytesIO(dicom))
        uid = generate_uid(entropy_srcs=[prefix, str(number)])
        dataset.SOPInstanceUID = uid
        dataset.file_meta.MediaStorageSOPInstanceUID = uid
        dataset.InstanceNumber = number + 1
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        copies.append(buffer.getvalue())
    return copies


def expected_keys(orthanc, instances) -> list[str]:
    return official_names([uuid for instance in instances for uuid in attachment_uuids(orthanc, instance)])


def test_upload_on_one_replica_read_archive_delete_on_the_other(replicas, s3_backend, dicom_files):
    first, second = replicas
    uploaded = {first.upload(data)["ID"]: data for _, data in dicom_files[:3]}

    assert sorted(second.get_json("/instances")) == sorted(uploaded)
    for instance, data in uploaded.items():
        assert second.get(f"/instances/{instance}/file") == data
        tags = second.get_json(f"/instances/{instance}/tags?simplify")
        assert tags["SOPInstanceUID"]
    archived = []
    for patient in second.get_json("/patients"):
        archive = zipfile.ZipFile(io.BytesIO(second.get(f"/patients/{patient}/archive")))
        archived += [archive.read(name) for name in archive.namelist() if not name.endswith("/")]
    assert sorted(archived) == sorted(uploaded.values())
    assert s3_backend.keys() == expected_keys(second, uploaded)

    for instance in uploaded:
        second.delete(f"/instances/{instance}")
    assert first.get_json("/instances") == []
    for instance in uploaded:
        with pytest.raises(HttpError) as missing:
            first.get(f"/instances/{instance}/file")
        assert missing.value.status == 404
    assert s3_backend.keys() == []
    for replica in replicas:
        assert "Error in the Python" not in replica.log()


def test_concurrent_uploads_through_both_replicas(replicas, s3_backend, dicom_files):
    copies = distinct_instances(dicom_files[0][1], 24, "concurrent")
    # Four clients, two per replica, each with its own bounded share of the files.
    shares = [(replicas[number % 2], copies[number::4]) for number in range(4)]
    results, failures = {}, []

    def client(replica, share):
        for data in share:
            try:
                results[replica.upload(data)["ID"]] = data
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=share) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert len(results) == len(copies)

    for replica in replicas:
        assert sorted(replica.get_json("/instances")) == sorted(results)
    first, second = replicas
    for number, (instance, data) in enumerate(sorted(results.items())):
        reader = replicas[number % 2]
        assert reader.get(f"/instances/{instance}/file") == data
    keys = s3_backend.keys()
    assert keys == expected_keys(first, results)
    # the DICOM file and, through v1 (1.10.1), its header; nothing left over
    assert len(keys) == (1 if first.storage_api == "v3" else 2) * len(copies)
    study = second.get_json("/studies")
    assert len(study) == 1
    assert len(first.get_json(f"/studies/{study[0]}/instances")) == len(copies)


def test_a_replica_that_dies_loses_nothing(replicas, s3_backend, dicom_files):
    first, second = replicas
    before = {first.upload(data)["ID"]: data for _, data in dicom_files[:2]}
    first.kill()  # SIGKILL: no clean shutdown

    for instance, data in before.items():
        assert second.get(f"/instances/{instance}/file") == data
    after = {second.upload(data)["ID"]: data for _, data in dicom_files[2:4]}

    first.start()
    everything = {**before, **after}
    assert sorted(first.get_json("/instances")) == sorted(everything)
    for instance, data in everything.items():
        assert first.get(f"/instances/{instance}/file") == data
    assert s3_backend.keys() == expected_keys(first, everything)



def test_a_replica_killed_in_the_middle_of_an_upload_loses_nothing(s3_backend, index, orthanc_factory,
                                                                   dicom_files):
    """The client's request fails; its retry through the other replica stores the instance completely."""
    proxy = FaultProxy(s3_backend.moto.port)  # the replica to freeze has a proxy of its own
    try:
        settings = {**s3_backend.settings(), **index, "Plugins": [PYTHON_PLUGIN, INDEX_PLUGIN]}
        frozen_settings = {**settings, "DatabaseServerIdentifier": "replica-a"}
        frozen_settings["AwsS3Storage"] = {**settings["AwsS3Storage"], "Endpoint": proxy.url,
                                           "RequestTimeout": 60}
        first = orthanc_factory(frozen_settings, name="replica-a")
        second = orthanc_factory({**settings, "DatabaseServerIdentifier": "replica-b"}, name="replica-b")
        data = dicom_files[0][1]

        proxy.mode = "hold"
        upload, outcome = in_background(first.upload, data)
        assert proxy.held.wait(30), "the upload never reached the bucket"
        first.kill()  # SIGKILL while the plugin is writing the DICOM file
        upload.join(60)
        assert outcome and isinstance(outcome[0], Exception), outcome  # the client sees the failure

        instance = second.upload(data)["ID"]  # ... and retries through the other replica
        assert second.get(f"/instances/{instance}/file") == data
        assert s3_backend.keys() == expected_keys(second, [instance])

        proxy.mode = "pass"
        first.start()
        assert first.get_json("/instances") == [instance]
        assert first.get(f"/instances/{instance}/file") == data
    finally:
        proxy.close()


def test_move_job_on_one_replica_while_the_other_serves_reads(s3_backend, index, orthanc_factory, dicom_files):
    """Hybrid mode across replicas: a shared StorageDirectory, a move job started (and polled) on one
    replica while the other reads every file; the job is the first replica's only."""
    settings = {**s3_backend.settings(HybridMode="WriteToFileSystem"), **index,
                "Plugins": [PYTHON_PLUGIN, INDEX_PLUGIN]}
    first = orthanc_factory({**settings, "DatabaseServerIdentifier": "replica-a"}, name="replica-a", start=False)
    shared = first.config["StorageDirectory"]
    first.start()
    second = orthanc_factory({**settings, "DatabaseServerIdentifier": "replica-b", "StorageDirectory": shared},
                             name="replica-b")
    uploaded = {first.upload(data)["ID"]: data for data in distinct_instances(dicom_files[0][1], 12, "move")}
    assert s3_backend.keys() == []  # WriteToFileSystem: everything is on the shared folder
    study = first.get_json(f"/instances/{next(iter(uploaded))}/study")["ID"]

    s3_backend.proxy.close_gate()  # the job's writes wait until the other replica has read every file once
    job = first.post_json("/move-storage", {"Resources": [study], "TargetStorage": "object-storage",
                                            "Asynchronous": True})
    rounds = 0
    try:
        assert s3_backend.proxy.wait_waiting(1), "the job never wrote"
        while first.get_json(job["Path"])["State"] not in ("Success", "Failure"):
            for instance, data in uploaded.items():
                assert second.get(f"/instances/{instance}/file") == data
            if rounds == 0:
                assert first.get_json(job["Path"])["State"] == "Running"  # the first round ran beside the job
                s3_backend.proxy.open_gate()
            rounds += 1
    finally:
        s3_backend.proxy.open_gate()
    status = first.get_json(job["Path"])
    assert status["State"] == "Success", status
    with pytest.raises(HttpError) as caught:
        second.get(job["Path"])
    assert caught.value.status == 404

    assert s3_backend.keys() == expected_keys(first, uploaded)
    left_on_disk = [name for folder, subfolders, names in os.walk(first.host_path(shared))
                    if "objstore-jobs" not in folder and "objstore-deletions" not in folder for name in names]
    assert left_on_disk == []
    for instance, data in uploaded.items():
        assert second.get(f"/instances/{instance}/file") == data


def test_both_replicas_adopt_one_lake_at_once(replicas, s3_backend):
    """Adoption in scale-out: both replicas adopt the same prefix at the same time; each object becomes one
    instance, read byte for byte by either replica, with one reference and one registry entry; an instance
    adopted by one and deleted by the other leaves the lake object, which was not owned, in place."""
    first, second = replicas
    lake = {f"lake/{number}.dcm": data
            for number, data in enumerate(make_instances(8, studies=2, seed="1.2.826.0.1.3680043.8.498.97"))}
    for key, data in lake.items():
        s3_backend.write(key, data)
    answers, failures = {}, []

    def adopt(number, replica):
        try:
            answers[number] = replica.post_json("/objstore/adopt", {"Prefix": "lake/"})
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(repr(exc))

    threads = [threading.Thread(target=adopt, args=pair) for pair in enumerate(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads) and failures == []
    assert all(answer["Failed"] == [] and answer["Abandoned"] == 0 for answer in answers.values()), answers
    # every object adopted once in all, and found stored by the other replica
    assert sum(answer["Adopted"] for answer in answers.values()) == len(lake), answers
    assert sum(answer["Adopted"] + answer["AlreadyStored"] for answer in answers.values()) == 2 * len(lake), answers

    instances = first.get_json("/instances")
    assert sorted(second.get_json("/instances")) == sorted(instances) and len(instances) == len(lake)
    for number, instance in enumerate(sorted(instances)):
        reader = replicas[number % 2]
        assert reader.get(f"/instances/{instance}/file") in lake.values()
    # the lake, the attachments' own objects (references, and headers through v1) and one registry entry each
    entries = [key for key in s3_backend.keys() if key.startswith(REGISTRY_FOLDER)]
    assert len(entries) == len(lake)
    others = sorted(key for key in s3_backend.keys() if key not in lake and key not in entries)
    assert others == expected_keys(first, instances)

    # adopted (without ownership) through one, deleted through the other: the lake object stays
    instance = sorted(instances)[0]
    data = second.get(f"/instances/{instance}/file")
    second.delete(f"/instances/{instance}")
    assert instance not in first.get_json("/instances")
    assert sorted(key for key in s3_backend.keys() if key.startswith("lake/")) == sorted(lake)
    assert data in [s3_backend.read(key) for key in lake]
    # and adopting again brings it back, from either replica
    again = first.post_json("/objstore/adopt", {"Prefix": "lake/"})
    assert (again["Adopted"], again["AlreadyStored"], again["Failed"]) == (1, len(lake) - 1, []), again
    assert second.get(f"/instances/{instance}/file") == data
