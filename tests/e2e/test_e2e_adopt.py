"""End to end: adopting objects already in the bucket (POST /objstore/adopt...), and disaster recovery from it.

Through a real Orthanc (1.10.1 and 1.13) on every provider: the adopted instance's DICOM attachment is a
reference to the lake object (no copy of its bytes), adoption is idempotent, junk is listed with a reason,
ownership decides whether the lake object goes with its instance, a vanished object's instance is
abandoned, an object replaced in the lake is refused, and a new index is rebuilt from the plugin's own
bucket (plain and encrypted).
"""

import base64
import json

import pytest
from support.attachments import write_key
from support.dicom import make_instances
from support.orthanc import HttpError

from orthanc_objstore.areas.adoption import REFERENCE_MAGIC, REGISTRY_FOLDER

pytestmark = pytest.mark.orthanc


def dicom_uuid(orthanc, instance) -> str:
    return orthanc.get_json(f"/instances/{instance}/attachments/dicom/info")["Uuid"]


def lake_keys(backend, prefix="lake/") -> list[str]:
    return [key for key in backend.keys() if key.startswith(prefix)]


def test_adopt_a_lake_with_junk_idempotently_and_abandon_what_vanished(backend, orthanc_factory):
    files = make_instances(3, seed="1.2.826.0.1.3680043.8.498.91")
    for number, data in enumerate(files):
        backend.write(f"lake/ct/{number}.dcm", data)
    backend.write("lake/notes.txt", b"not a DICOM file at all")
    backend.write("lake/cut.dcm", files[0][:300])
    orthanc = orthanc_factory(backend.settings())

    summary = orthanc.post_json("/objstore/adopt", {"Prefix": "lake/"})
    assert summary["Adopted"] == 3 and summary["AlreadyStored"] == 0 and summary["Abandoned"] == 0, summary
    assert sorted(item["Key"] for item in summary["Failed"]) == ["lake/cut.dcm", "lake/notes.txt"]
    assert all(item["Error"] for item in summary["Failed"])
    instances = orthanc.get_json("/instances")
    assert len(instances) == 3
    lake_bytes = sum(map(len, files))
    for instance in instances:
        data = orthanc.get(f"/instances/{instance}/file")
        assert data in files
        # the attachment's own object is a reference, not a copy
        stored = backend.read(dicom_uuid(orthanc, instance) + ".dcm")
        assert stored.startswith(REFERENCE_MAGIC) and len(stored) < 1000
    added = [key for key in backend.keys() if not key.startswith("lake/")]
    assert sum(len(backend.read(key)) for key in added) < lake_bytes // 2, added

    keys_before = backend.keys()
    again = orthanc.post_json("/objstore/adopt", {"Prefix": "lake/"})
    assert again["Adopted"] == 0 and again["AlreadyStored"] == 3 and again["Abandoned"] == 0, again
    assert backend.keys() == keys_before  # nothing written

    # a vanished object: its instance is abandoned (removed from Orthanc)
    gone = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/ct/2.dcm"})
    assert gone["Status"] == "AlreadyStored"
    backend.delete("lake/ct/2.dcm")
    third = orthanc.post_json("/objstore/adopt", {"Prefix": "lake/"})
    assert third["Abandoned"] == 1 and third["AlreadyStored"] == 2, third
    assert gone["InstanceId"] not in orthanc.get_json("/instances")
    assert len(orthanc.get_json("/instances")) == 2


def test_ownership_decides_whether_the_lake_object_goes_with_its_instance(backend, orthanc_factory):
    kept, owned, abandoned = make_instances(3, seed="1.2.826.0.1.3680043.8.498.92")
    backend.write("lake/kept.dcm", kept)
    backend.write("lake/owned.dcm", owned)
    backend.write("lake/abandoned.dcm", abandoned)
    orthanc = orthanc_factory(backend.settings())

    first = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/kept.dcm"})
    assert first["Status"] == "Success" and first["InstanceId"] and first["AttachmentUuid"], first
    second = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/owned.dcm", "TakeOwnership": True})
    assert second["Status"] == "Success", second
    third = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/abandoned.dcm"})
    assert orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/kept.dcm"})["Status"] == "AlreadyStored"

    orthanc.delete(f"/instances/{first['InstanceId']}")
    orthanc.delete(f"/instances/{second['InstanceId']}")
    assert "lake/kept.dcm" in backend.keys()  # not owned: the lake keeps it
    assert "lake/owned.dcm" not in backend.keys()  # owned: deleted with its instance
    assert backend.read("lake/kept.dcm") == kept
    assert not [key for key in backend.keys() if key.startswith(first["AttachmentUuid"])]

    answer = orthanc.post_json("/objstore/abandon-instance", {"Key": "lake/abandoned.dcm"})
    assert answer["Status"] == "Success" and answer["InstanceId"] == third["InstanceId"]
    assert orthanc.get_json("/instances") == []
    assert backend.read("lake/abandoned.dcm") == abandoned
    missing = orthanc.post_json("/objstore/abandon-instance", {"Key": "lake/abandoned.dcm"})
    assert missing["Status"] == "Failure" and "no instance was adopted" in missing["Error"]


def test_an_adopted_object_replaced_in_the_lake_is_refused(backend, orthanc_factory):
    mine, other = make_instances(2, studies=2, seed="1.2.826.0.1.3680043.8.498.93")
    assert len(mine) == len(other)
    backend.write("lake/mine.dcm", mine)
    orthanc = orthanc_factory(backend.settings())
    adopted = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/mine.dcm"})
    assert orthanc.get(f"/instances/{adopted['InstanceId']}/file") == mine

    backend.write("lake/mine.dcm", other)  # another patient's file, same size, under the adopted name
    with pytest.raises(HttpError) as refused:
        orthanc.get(f"/instances/{adopted['InstanceId']}/file")
    assert refused.value.status >= 500
    assert "has changed since" in orthanc.log()


def test_bad_requests_name_what_is_wrong(backend, orthanc_factory):
    orthanc = orthanc_factory(backend.settings())
    cases = [("/objstore/adopt", b"not json", "not JSON"),
             ("/objstore/adopt", b'{"Prefix": 3}', '"Prefix" must be a string'),
             ("/objstore/adopt", b'{"Prefix": "a/", "Colour": 1}', "unknown field(s) Colour"),
             ("/objstore/adopt-instance", b"{}", '"Key" is missing'),
             ("/objstore/adopt-instance", b'{"Key": "k", "TakeOwnership": "yes"}', "must be true or false")]
    for route, body, message in cases:
        with pytest.raises(HttpError) as refused:
            orthanc.post(route, body)
        assert refused.value.status == 400, (route, body)
        assert message in json.loads(refused.value.body)["Message"], (route, body)
    missing = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/none.dcm"})
    assert missing["Status"] == "Failure" and "no object" in missing["Error"]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_disaster_recovery_rebuilds_a_new_index_from_the_bucket(backend, orthanc_factory, encrypted):
    files = make_instances(4, studies=2, seed="1.2.826.0.1.3680043.8.498.94")
    first = orthanc_factory({}, name="lost", start=False)
    first.config.update(backend.settings())
    if encrypted:
        key_path, key = write_key(first, "master.key")
        first.config[backend.section]["StorageEncryption"] = {"MasterKey": [1, key_path]}
    first.start()
    for data in files:
        first.upload(data)
    objects_before = backend.keys()
    first.stop()  # its index is lost; the bucket keeps everything

    second = orthanc_factory({}, name="rebuilt", start=False)
    second.config.update(backend.settings())
    if encrypted:
        path = second.write_file("master.key", base64.b64encode(key) + b"\n")
        second.config[backend.section]["StorageEncryption"] = {"MasterKey": [1, path]}
    second.start()
    assert second.get_json("/instances") == []
    summary = second.post_json("/objstore/adopt", {"Prefix": "", "TakeOwnership": True})
    assert summary["Adopted"] == 4 and summary["Failed"] == [], summary
    rebuilt = sorted(second.get(f"/instances/{instance}/file") for instance in second.get_json("/instances"))
    assert rebuilt == sorted(files)
    # nothing copied: the new objects are references, headers and registry entries, all small
    added = set(backend.keys()) - set(objects_before)
    assert added and all(len(backend.read(key)) < 4096 or ".dcm.head" in key for key in added), added
    assert any(key.split("/")[0] == REGISTRY_FOLDER.rstrip("/") for key in added)
    again = second.post_json("/objstore/adopt", {"Prefix": "", "TakeOwnership": True})
    assert again["Adopted"] == 0 and again["AlreadyStored"] == 4 and again["Failed"] == [], again


def test_with_the_read_cache_a_changed_object_adopted_again_is_read_as_it_is_now(backend, orthanc_factory):
    first, second = make_instances(2, studies=2, seed="1.2.826.0.1.3680043.8.498.96")
    backend.write("lake/study.dcm", first)
    settings = backend.settings()
    settings[backend.section]["ReadCache"] = {"MemorySize": 64}  # the default configuration's cache
    orthanc = orthanc_factory(settings)
    adopted = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/study.dcm"})
    assert orthanc.get(f"/instances/{adopted['InstanceId']}/file") == first  # now in the cache

    backend.write("lake/study.dcm", second)  # the lake's owner corrects the file
    assert orthanc.post_json("/objstore/abandon-instance", {"Key": "lake/study.dcm"})["Status"] == "Success"
    again = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/study.dcm"})
    assert again["Status"] == "Success" and again["InstanceId"] != adopted["InstanceId"]
    assert orthanc.get(f"/instances/{again['InstanceId']}/file") == second
    assert backend.read("lake/study.dcm") == second


@pytest.mark.parametrize("owned", [True, False], ids=["owned", "not-owned"])
def test_adopting_a_copy_of_an_instance_already_stored_deletes_nothing(backend, orthanc_factory, owned):
    """Orthanc 1.10.1 writes the attachments of an instance it already holds before it answers AlreadyStored,
    and removes them: that removal must take the new reference only, never the adopted object (before: with
    TakeOwnership the lake copy was deleted, and disaster recovery over a non-empty index would have deleted
    the instance's own file)."""
    data = make_instances(1, seed="1.2.826.0.1.3680043.8.498.99")[0]
    orthanc = orthanc_factory(backend.settings())
    instance = orthanc.upload(data)["ID"]
    own_key = dicom_uuid(orthanc, instance) + ".dcm"
    backend.write("lake/copy.dcm", data)
    keys = backend.keys()

    copy = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/copy.dcm", "TakeOwnership": owned})
    assert (copy["Status"], copy["InstanceId"], copy["AttachmentUuid"]) == ("AlreadyStored", instance, ""), copy
    recovered = orthanc.post_json("/objstore/adopt", {"Prefix": "", "TakeOwnership": owned})
    assert recovered["Adopted"] == 0 and recovered["AlreadyStored"] == 2 and recovered["Abandoned"] == 0, recovered
    orthanc.restart()  # deferred removals done, caches empty
    assert orthanc.get(f"/instances/{instance}/file") == data
    assert backend.read("lake/copy.dcm") == data and backend.read(own_key) == data
    assert backend.keys() == keys  # no reference or registry entry left behind


def test_an_owned_adoption_whose_registry_entry_was_lost_is_already_stored_and_keeps_its_object(backend,
                                                                                                orthanc_factory):
    # as after Orthanc killed between the instance's creation and its registry entry (e.g. during an adopt job)
    data = make_instances(1, seed="1.2.826.0.1.3680043.8.498.97")[0]
    backend.write("lake/owned.dcm", data)
    orthanc = orthanc_factory(backend.settings())
    first = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/owned.dcm", "TakeOwnership": True})
    assert first["Status"] == "Success", first
    entries = [key for key in backend.keys() if key.startswith(REGISTRY_FOLDER)]
    assert len(entries) == 1
    backend.delete(entries[0])

    again = orthanc.post_json("/objstore/adopt-instance", {"Key": "lake/owned.dcm", "TakeOwnership": True})
    assert again["Status"] == "AlreadyStored" and again["InstanceId"] == first["InstanceId"], again
    assert again["AttachmentUuid"] == first["AttachmentUuid"]  # the registry records the instance's own again
    assert backend.read("lake/owned.dcm") == data  # the attachment Orthanc discarded did not take it along
    assert orthanc.get(f"/instances/{first['InstanceId']}/file") == data
    assert [key for key in backend.keys() if key.startswith(REGISTRY_FOLDER)] == entries
    orthanc.delete(f"/instances/{first['InstanceId']}")  # owned: it goes with its instance
    assert "lake/owned.dcm" not in backend.keys()
