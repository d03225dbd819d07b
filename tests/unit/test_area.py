"""ObjectArea: names from Naming, the legacy-name fallback, locate; and the orphan reaper."""

import time

import pytest
from support.faulty_store import FaultyStore
from support.waiting import wait_for

from orthanc_objstore.areas.contract import ObjectArea
from orthanc_objstore.areas.naming import Naming
from orthanc_objstore.errors import NotFound
from orthanc_objstore.orthanc_side.orphans import OrphanReaper
from orthanc_objstore.storage.providers.memory import MemoryStore

U = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"


def test_create_read_remove_use_official_names():
    store = MemoryStore()
    area = ObjectArea(store, Naming(root_path="root"))
    area.create(U, 1, b"dicom")
    area.create(U, 3, b"head")
    assert store.keys() == [f"root/{U}.dcm", f"root/{U}.dcm.head"]
    assert area.read(U, 1) == b"dicom"
    assert area.read_range(U, 1, 1, 3) == b"ico"
    area.remove(U, 1)
    area.remove(U, 1)
    assert store.keys() == [f"root/{U}.dcm.head"]
    with pytest.raises(NotFound):
        area.read(U, 1)


def test_legacy_unknown_files_are_read_and_deleted_under_their_old_name():
    store = MemoryStore()
    store.put(f"{U}.unk", b"old header")
    with pytest.raises(NotFound):
        ObjectArea(store, Naming()).read(U, 3)
    area = ObjectArea(store, Naming(legacy_unknown_files=True))
    assert area.read(U, 3) == b"old header"
    assert area.read_range(U, 3, 4, 6) == b"header"
    assert [location.key for location in area.locate(U, 3)] == [f"{U}.unk"]
    area.remove(U, 3)
    assert store.keys() == []


def test_missing_everywhere_raises_the_first_not_found():
    area = ObjectArea(MemoryStore(), Naming(legacy_unknown_files=True))
    with pytest.raises(NotFound) as caught:
        area.read(U, 3)
    assert caught.value.key == f"{U}.dcm.head"


def test_reaper_retries_until_the_store_is_back():
    store = FaultyStore().fail("delete")  # unreachable for deletes until healed
    area = ObjectArea(store, Naming())
    area.create(U, 1, b"orphan")
    reaper = OrphanReaper(area, first_delay=0.01, max_delay=0.05)
    reaper.schedule(U, 1)
    time.sleep(0.2)
    assert store.keys() == [f"{U}.dcm"]
    store.heal()
    assert wait_for(lambda: store.keys() == [], timeout=10.0, interval=0.01)
    reaper.stop()
