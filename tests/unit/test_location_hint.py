"""The location hint: where an attachment was written, kept by Orthanc 1.13 as custom data (area.Location)."""

import pytest

from orthanc_objstore.areas.contract import Location, ObjectArea
from orthanc_objstore.areas.naming import Naming
from orthanc_objstore.errors import NotFound
from orthanc_objstore.storage.providers.memory import MemoryStore

UUID = "0a1b2c3d-0000-4000-8000-00000000abcd"
OTHER = "ffffffff-0000-4000-8000-00000000abcd"


def test_create_returns_where_it_wrote():
    area = ObjectArea(MemoryStore(), Naming(root_path="root"))
    location = area.create(UUID, 1, b"dicom bytes")
    assert location == Location("object-storage", f"root/{UUID}.dcm")
    assert area.read_range(UUID, 1, 2, 5, location=location) == b"com b"


@pytest.mark.parametrize("location", [Location("object-storage", f"a/{UUID}.dcm"),
                                      Location("object-storage", f"a/b/{UUID[:2]}/{UUID[2:4]}/{UUID}")])
def test_custom_data_round_trip(location):
    data = location.to_custom_data()
    assert len(data) < 200 and data.startswith(b"{")
    assert Location.from_custom_data(data, UUID) == location


@pytest.mark.parametrize("data", [
    b"",                                               # v1 API, Orthanc itself, or no custom data
    b"custom/path/by/the/official/plugin.dcm",         # the official plugin's NamingScheme: a raw path
    b"{not json", b"[]", b'{"v": 2, "storage": "object-storage", "key": "x"}',
    b'{"v": 1, "storage": "object-storage"}', b'{"v": 1, "storage": "", "key": "k"}',
    b"\x00\xff binary",
])
def test_foreign_custom_data_is_ignored(data):
    assert Location.from_custom_data(data, UUID) is None


def test_a_key_of_another_attachment_is_refused():
    data = Location("object-storage", f"{OTHER}.dcm").to_custom_data()
    assert Location.from_custom_data(data, UUID) is None


def test_hint_finds_objects_written_under_another_root_path():
    store = MemoryStore()
    location = ObjectArea(store, Naming(root_path="old")).create(UUID, 1, b"0123456789")
    moved_on = ObjectArea(store, Naming(root_path="new"))
    with pytest.raises(NotFound):
        moved_on.read(UUID, 1)
    assert moved_on.read(UUID, 1, location=location) == b"0123456789"
    assert moved_on.read_range(UUID, 1, 3, 4, location=location) == b"3456"
    moved_on.remove(UUID, 1, location=location)
    with pytest.raises(NotFound):
        store.get(location.key)


def test_a_stale_hint_falls_back_to_the_names():
    store = MemoryStore()
    area = ObjectArea(store, Naming())
    area.create(UUID, 1, b"data")
    assert area.read(UUID, 1, location=Location("object-storage", f"gone/{UUID}.dcm")) == b"data"
    # a hint naming another storage (the file-system side of hybrid mode) is not this area's business
    assert area.read(UUID, 1, location=Location("file-system", f"{UUID}")) == b"data"
    area.remove(UUID, 1, location=Location("object-storage", f"gone/{UUID}.dcm"))
    with pytest.raises(NotFound):
        area.read(UUID, 1)
