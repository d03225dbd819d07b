"""Adopted attachments (areas.adoption) and the adopter (jobs.adopt) over an in-memory store and a fake Orthanc."""


import pytest
from support.adoption_fakes import UUID, ListingFaultyStore, ListingMemoryStore, PostingOrthanc
from support.dicom import make_instances

from orthanc_objstore.areas.adoption import (
    REFERENCE_MAGIC,
    AdoptingArea,
    AdoptionRegistry,
    Lake,
    PendingAdoptions,
    Reference,
    RefusedUpload,
)
from orthanc_objstore.areas.contract import Location, ObjectArea
from orthanc_objstore.areas.naming import Naming
from orthanc_objstore.errors import IntegrityError, NotFound
from orthanc_objstore.jobs.adopt import Adopter
from orthanc_objstore.storage.providers.memory import MemoryStore

U = UUID


@pytest.fixture
def world():
    store = ListingMemoryStore()
    area = AdoptingArea(ObjectArea(store, Naming()), Lake(store))
    api = PostingOrthanc(area)
    adopter = Adopter(api, area, AdoptionRegistry(store, store), store)
    return store, area, api, adopter


def test_a_pending_adoption_is_stored_as_a_reference_and_read_through_it():
    store = MemoryStore()
    data = make_instances(1)[0]
    store.put("lake/a.dcm", data)
    area = AdoptingArea(ObjectArea(store, Naming()), Lake(store))
    reference = Reference.of("lake/a.dcm", data, owned=False)
    area.pending.add(reference)
    location = area.create(U.format(1), 1, data)
    assert area.pending.done(reference) == U.format(1)
    assert location.adopted and location.size == len(data)
    assert store.get(U.format(1) + ".dcm").startswith(REFERENCE_MAGIC)
    assert area.read(U.format(1), 1) == data
    restored = Location.from_custom_data(location.to_custom_data(), U.format(1))
    assert restored is not None and restored.adopted
    assert area.read_range(U.format(1), 1, 10, 20, restored) == data[10:30]
    # an ordinary upload of other bytes is stored as it is
    other = make_instances(2)[1]
    area.create(U.format(2), 1, other)
    assert store.get(U.format(2) + ".dcm") == other


@pytest.mark.parametrize(("start", "length"), [(0, 6000), (0, 20), (0, 5), (3000, 100)],
                         ids=["header", "first-bytes", "a-few-bytes", "past-the-reference"])
def test_a_range_read_without_custom_data_follows_a_reference(start, length):
    # an index that keeps no custom data (the PostgreSQL plugin 5 on 1.13), in another process than the adopter's
    store = MemoryStore()
    data = make_instances(1)[0]
    store.put("lake/a.dcm", data)
    adopter_side = AdoptingArea(ObjectArea(store, Naming()), Lake(store))
    reference = Reference.of("lake/a.dcm", data, owned=False)
    adopter_side.pending.add(reference)
    adopter_side.create(U.format(1), 1, data)
    other_replica = AdoptingArea(ObjectArea(store, Naming()), Lake(store))
    assert other_replica.read_range(U.format(1), 1, start, length, None) == data[start:start + length]
    assert adopter_side.read_range(U.format(1), 1, start, length, None) == data[start:start + length]
    # an attachment that is no reference is read as a range, as before
    other = make_instances(2)[1]
    other_replica.create(U.format(2), 1, other)
    assert other_replica.read_range(U.format(2), 1, start, length, None) == other[start:start + length]


def test_an_upload_that_could_pass_for_a_reference_is_refused():
    area = AdoptingArea(ObjectArea(MemoryStore(), Naming()), Lake(MemoryStore()))
    with pytest.raises(RefusedUpload):
        area.create(U.format(1), 1, Reference("lake/other.dcm", 10, "0" * 64, False).encode())


def test_a_changed_or_vanished_adopted_object_is_refused():
    store = MemoryStore()
    mine, other = make_instances(2, studies=2)
    store.put("lake/a.dcm", mine)
    area = AdoptingArea(ObjectArea(store, Naming()), Lake(store))
    area.pending.add(Reference.of("lake/a.dcm", mine, owned=False))
    area.create(U.format(1), 1, mine)
    store.put("lake/a.dcm", other[:len(mine)].ljust(len(mine), b"\0"))
    with pytest.raises(IntegrityError, match="has changed since"):
        area.read(U.format(1), 1)
    store.delete("lake/a.dcm")
    with pytest.raises(NotFound, match="which is gone"):
        area.read(U.format(1), 1)


def test_adopting_a_prefix_is_idempotent_lists_junk_and_abandons_vanished_objects(world):
    store, area, api, adopter = world
    files = make_instances(3)
    for number, data in enumerate(files):
        store.put(f"lake/{number}.dcm", data)
    store.put("lake/junk.txt", b"junk" * 100)
    store.put("lake/empty.dcm", b"")
    first = adopter.adopt_prefix("lake/", owned=False).answer()
    assert (first["Adopted"], first["AlreadyStored"], first["Abandoned"]) == (3, 0, 0)
    assert {item["Key"]: item["Error"] for item in first["Failed"]} == {
        "lake/junk.txt": "Orthanc refused it: /instances: Bad file format",
        "lake/empty.dcm": "an empty object, not a DICOM file"}
    keys = store.keys()
    again = adopter.adopt_prefix("lake/", owned=False).answer()
    assert (again["Adopted"], again["AlreadyStored"]) == (0, 3)
    assert store.keys() == keys
    store.delete("lake/1.dcm")
    third = adopter.adopt_prefix("lake/", owned=False).answer()
    assert third["Abandoned"] == 1 and third["AlreadyStored"] == 2
    assert len(api.deletes) == 1


def test_removal_deletes_the_lake_object_only_when_owned(world):
    store, area, api, adopter = world
    kept, owned = make_instances(2)
    store.put("lake/kept.dcm", kept)
    store.put("lake/owned.dcm", owned)
    first = adopter.adopt_instance("lake/kept.dcm", owned=False)
    second = adopter.adopt_instance("lake/owned.dcm", owned=True)
    assert first.status == second.status == "Success"
    for outcome in (first, second):  # what Orthanc does on DELETE /instances/{id}
        api.delete(f"/instances/{outcome.instance}")
        area.remove(outcome.attachment, 1)
    assert "lake/kept.dcm" in store.keys() and "lake/owned.dcm" not in store.keys()
    assert adopter.registry.get("lake/kept.dcm") is None  # forgotten with its attachment
    # on 1.13 the custom data says it is adopted even when this process did not adopt it
    store.put("lake/kept.dcm", kept)
    third = adopter.adopt_instance("lake/kept.dcm", owned=True)
    assert third.status == "Success"
    area.adopted.clear()
    area.remove(third.attachment, 1, Location("object-storage", third.attachment + ".dcm", adopted=True))
    assert "lake/kept.dcm" not in store.keys()


def test_the_plugin_s_own_objects_are_recognised(world):
    store, area, api, adopter = world
    data = make_instances(1)[0]
    store.put(U.format(9) + ".dcm", data)
    store.put(U.format(9) + ".dcm.head", data[:200])
    store.put(U.format(9) + ".json", b"{}")
    summary = adopter.adopt_prefix("", owned=True).answer()
    assert summary["Adopted"] == 1 and summary["Failed"] == [], summary
    # the reference written for it and the registry entry are skipped too
    assert adopter.adopt_prefix("", owned=True).answer() == {"Adopted": 0, "AlreadyStored": 1, "Abandoned": 0,
                                                             "Failed": []}
    assert PendingAdoptions().take(U.format(1), data) is None


@pytest.mark.parametrize("owned", [True, False])
def test_adopting_a_copy_of_an_instance_already_stored_keeps_both_files(owned):
    """The copy in the lake is no adoption (AlreadyStored), and neither it nor the stored instance's own
    object is deleted, whatever TakeOwnership says (before: the owned lake object was deleted)."""
    store = ListingMemoryStore()
    area = AdoptingArea(ObjectArea(store, Naming()), Lake(store))
    api = PostingOrthanc(area, writes_first=True)
    adopter = Adopter(api, area, AdoptionRegistry(store, store), store)
    data = make_instances(1)[0]
    stored = api.post_json("/instances", data)  # an ordinary upload, before any adoption
    own_object = U.format(1) + ".dcm"
    store.put("lake/copy.dcm", data)
    outcome = adopter.adopt_instance("lake/copy.dcm", owned).answer()
    assert (outcome["Status"], outcome["InstanceId"], outcome["AttachmentUuid"]) == (
        "AlreadyStored", stored["ID"], "")
    assert store.get("lake/copy.dcm") == data and store.get(own_object) == data
    assert sorted(store.keys()) == sorted(["lake/copy.dcm", own_object])  # no reference, no registry entry left
    assert area.adopted == {}
    # disaster recovery over an index that still holds the instance: its own object is kept too
    outcome = adopter.adopt_instance(own_object, owned).answer()
    assert outcome["Status"] == "AlreadyStored" and store.get(own_object) == data


def test_ranges_of_an_adopted_attachment_without_custom_data_follow_the_reference():
    """An index that keeps no custom data (1.13 with such an index plugin; another replica's adoption): a range
    read gets no location, and must still follow the reference whatever the range (before: it read the
    reference itself, and failed or answered its bytes)."""
    store = MemoryStore()
    data = make_instances(1)[0] + bytes(20_000)
    plain = make_instances(2)[1]
    store.put("lake/a.dcm", data)
    adopting = AdoptingArea(ObjectArea(store, Naming()), Lake(store))
    reference = Reference.of("lake/a.dcm", data, owned=False)
    adopting.pending.add(reference)
    adopting.create(U.format(1), 1, data)
    adopting.pending.done(reference)
    adopting.create(U.format(2), 1, plain)
    other_replica = AdoptingArea(ObjectArea(store, Naming()), Lake(store))  # knows of no adoption
    for area in (adopting, other_replica):
        for start, length in ((0, 10_000), (0, 16), (50, 20), (100, 8_000), (12_000, 3_000)):
            assert area.read_range(U.format(1), 1, start, length) == data[start:start + length], (start, length)
        assert area.read_range(U.format(2), 1, 0, 132) == plain[:132]
        assert area.read_range(U.format(2), 1, 60, 40) == plain[60:100]
        with pytest.raises(IntegrityError):
            area.read_range(U.format(2), 1, 0, len(plain) + 1)  # a plain file read past its end still fails


def test_a_store_down_makes_an_adoption_or_an_abandon_a_failure_not_an_error():
    """POST /objstore/adopt-instance and abandon-instance answer "Status": "Failure" with the reason when the
    store is down (before: the exception became an HTTP 500); a prefix counts an abandon that failed as failed."""
    store = ListingFaultyStore()
    area = AdoptingArea(ObjectArea(store, Naming()), Lake(store))
    api = PostingOrthanc(area)
    adopter = Adopter(api, area, AdoptionRegistry(store, store), store)
    kept, vanishing = make_instances(2)
    store.put("lake/kept.dcm", kept)
    store.put("lake/vanishing.dcm", vanishing)
    assert adopter.adopt_prefix("lake/", owned=False).answer()["Adopted"] == 2
    store.delete("lake/vanishing.dcm")

    store.fail("get", "get_range", "head")
    for outcome in (adopter.adopt_instance("lake/kept.dcm", False), adopter.abandon_instance("lake/kept.dcm")):
        assert outcome.status == "Failure" and "the store is down" in outcome.error, outcome
    store.heal()
    store.fail("delete")  # the registry entry of the vanished object cannot be forgotten
    summary = adopter.adopt_prefix("lake/", owned=False).answer()
    assert summary["Abandoned"] == 0 and [item["Key"] for item in summary["Failed"]] == ["lake/vanishing.dcm"]
    store.heal()
    assert adopter.adopt_prefix("lake/", owned=False).answer()["Abandoned"] == 1


def test_an_adoption_whose_registry_entry_cannot_be_written_is_a_success_that_says_so():
    """Orthanc holds the instance: the answer is Success (not a Failure that would hide it), with what to do;
    adopting the object again writes the entry."""
    store = ListingFaultyStore()
    area = AdoptingArea(ObjectArea(store, Naming()), Lake(store))
    api = PostingOrthanc(area, writes_first=True)
    registry = AdoptionRegistry(store, store)
    adopter = Adopter(api, area, registry, store)
    data = make_instances(1)[0]
    store.put("lake/a.dcm", data)
    store.fail("put", suffix=".json")
    first = adopter.adopt_instance("lake/a.dcm", False)
    assert first.status == "Success" and first.instance and "registry entry could not be written" in first.error
    assert registry.get("lake/a.dcm") is None
    store.heal()
    again = adopter.adopt_instance("lake/a.dcm", False)
    assert (again.status, again.instance, again.attachment, again.error) == (
        "AlreadyStored", first.instance, first.attachment, "")
    assert registry.get("lake/a.dcm")["Attachment"] == first.attachment


def test_identical_bytes_are_posted_one_after_the_other():
    """Two adoptions of the same bytes (the copy of a stored instance and its own object, adopted by two workers)
    must not share one pending slot: the second waits until the first is done (before: the first's attachment
    took the second's reference, and Orthanc's removal of it deleted that owned object; CI, Azure and GCS)."""
    import threading

    data = make_instances(1)[0]
    pending = PendingAdoptions()
    first, second = Reference.of("lake/copy.dcm", data, True), Reference.of("own.dcm", data, True)
    pending.add(first)
    added = threading.Event()
    thread = threading.Thread(target=lambda: (pending.add(second), added.set()), daemon=True)
    thread.start()
    assert not added.wait(0.3)  # never set while the first is in flight: a correct pending waits for good
    assert pending.take(U.format(1), data) == first
    assert pending.give_back(U.format(1)) == first and pending.done(first) is None
    assert added.wait(10)
    assert pending.take(U.format(2), data) == second and pending.done(second) == U.format(2)
