"""check_owner with the owner mark: objects without a record are read when older than the mark, refused
from the mark's second on, and always under Refuse (datetime.min)."""

import datetime

import pytest

from orthanc_objstore.errors import OwnerlessObject, WrongOwner
from orthanc_objstore.storage.protocol import Owner, check_owner

MARK = datetime.datetime(2026, 12, 2, 7, 0, 0, tzinfo=datetime.UTC)
OWNER = Owner("u-1", 1)


def at(seconds):
    return MARK + datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("modified, since", [(at(-1), MARK), (at(5), None), (None, None)],
                         ids=["before-the-mark", "no-mark", "nothing-known"])
def test_ownerless_objects_that_are_read(modified, since):
    assert check_owner("k", OWNER, None, "S3", modified, since) is None


@pytest.mark.parametrize("modified", [at(0), at(1), None], ids=["the-marks-second", "after", "unknown-age"])
def test_ownerless_objects_after_the_mark_are_refused(modified):
    with pytest.raises(OwnerlessObject) as caught:
        check_owner("k", OWNER, None, "S3", modified, MARK)
    assert isinstance(caught.value, WrongOwner) and caught.value.key == "k"
    assert str(caught.value).startswith("S3 read of 'k' for attachment u-1 of type 1: the object has no owner record")
    assert "verify --deep --stamp" in str(caught.value) and '"OwnerlessObjects": "Accept"' in str(caught.value)


def test_refuse_names_the_option():
    with pytest.raises(OwnerlessObject, match="OwnerlessObjects is Refuse"):
        check_owner("k", OWNER, None, "S3", at(-1000), datetime.datetime.min.replace(tzinfo=datetime.UTC))


def test_a_record_still_decides_whatever_the_age():
    check_owner("k", OWNER, "u-1:1", "S3", at(10), MARK)
    with pytest.raises(WrongOwner) as caught:
        check_owner("k", OWNER, "u-2:1", "S3", at(-10), MARK)
    assert not isinstance(caught.value, OwnerlessObject)
    check_owner("k", None, None, "S3", at(10), MARK)  # reads without an owner (tools, tests) check nothing
