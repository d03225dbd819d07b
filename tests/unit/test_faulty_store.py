"""The FaultyStore double itself: it fails what it is told, as often as told, covers the protocol, counts calls."""

import pytest
from support.faulty_store import OPERATIONS, FaultyStore

from orthanc_objstore.errors import IntegrityError, NotFound, StoreUnavailable
from orthanc_objstore.storage.protocol import PROTOCOL_METHODS
from orthanc_objstore.testing.conformance import CHECKS


def test_it_covers_every_operation_of_the_protocol():
    assert set(PROTOCOL_METHODS) - {"describe"} == set(OPERATIONS)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__[len("check_"):])
def test_without_faults_it_is_a_conforming_store(check):
    check(FaultyStore())


def test_faults_follow_operations_suffixes_and_times():
    store = FaultyStore()
    store.put("a.dcm", b"dicom")
    store.put("a.dcm.head", b"head")
    store.fail("get", suffix=".head", times=2)
    assert store.get("a.dcm") == b"dicom"
    for _ in range(2):
        with pytest.raises(StoreUnavailable) as caught:
            store.get("a.dcm.head")
        assert caught.value.key == "a.dcm.head"
    assert store.get("a.dcm.head") == b"head"  # twice only
    store.fail("delete", error=lambda key: NotFound("gone", key))
    with pytest.raises(NotFound):
        store.delete("a.dcm")
    store.heal()
    store.delete("a.dcm")
    assert store.keys() == ["a.dcm.head"]
    assert store.count("get") == 4 and store.count("delete") == 2


def test_reads_record_what_each_read_returned():
    store = FaultyStore()
    store.put("k", b"0123456789")
    assert store.get_range("k", 2, 3) == b"234" and store.head("k") == 10 and store.get("k") == b"0123456789"
    with pytest.raises(IntegrityError):
        store.get_range("k", 8, 3)
    assert store.reads() == [("get_range", 3), ("get", 10)]


@pytest.mark.parametrize("operations, times, problem", [((), None, "none"), (("read",), None, "read"),
                                                         (("get",), 0, "1 or more")])
def test_a_wrong_fault_says_what_is_allowed(operations, times, problem):
    with pytest.raises(ValueError, match=problem):
        FaultyStore().fail(*operations, times=times)
