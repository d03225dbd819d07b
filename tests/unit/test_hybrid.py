"""HybridArea on memory stores: routing, NotFound-only fallback, quiet misses, location hints.

The Area contract itself (every area, hybrid included) is tests/unit/test_area_conformance.py."""

import logging
import uuid as uuidlib

import pytest
from support.faulty_store import FaultyStore
from support.hybrid_world import file_system_side, object_side

from orthanc_objstore import build
from orthanc_objstore.areas.contract import FILE_SYSTEM, OBJECT_STORAGE, Location, ObjectArea
from orthanc_objstore.areas.hybrid import HybridArea
from orthanc_objstore.areas.naming import Naming
from orthanc_objstore.build import build_hybrid_area
from orthanc_objstore.config import sections as config
from orthanc_objstore.errors import NotFound, StoreUnavailable
from orthanc_objstore.storage.providers.memory import MemoryStore


def sides():
    return object_side(), file_system_side()


def new_uuid():
    return str(uuidlib.uuid4())


@pytest.mark.parametrize("mode", ["WriteToFileSystem", "WriteToObjectStorage"])
def test_writes_go_to_the_primary_and_reads_find_both_sides(mode):
    objects, file_system = sides()
    area = build_hybrid_area(objects, file_system, mode)
    primary, secondary = (file_system, objects) if mode == "WriteToFileSystem" else (objects, file_system)
    assert (area.primary, area.secondary) == (primary, secondary)
    new, old = new_uuid(), new_uuid()
    area.create(new, 1, b"new file")
    secondary.create(old, 1, b"old file")
    assert primary.store.keys() == [primary.naming.key(new, 1)]
    assert area.read(new, 1) == b"new file" and area.read(old, 1) == b"old file"
    assert area.read_range(old, 1, 4, 4) == b"file"
    assert [location.storage for location in area.locate(old, 1)] == [secondary.storage_name]
    area.remove(new, 1)
    area.remove(old, 1)
    assert primary.store.keys() == [] and secondary.store.keys() == []
    area.remove(old, 1)  # idempotent


def test_only_not_found_falls_back():
    objects, file_system = sides()
    broken = ObjectArea(FaultyStore().fail("get", "get_range", "head"), Naming())  # down for reads
    area = HybridArea(broken, file_system, file_system=file_system, object_storage=broken)
    uuid = new_uuid()
    file_system.create(uuid, 1, b"on disk")
    with pytest.raises(StoreUnavailable):
        area.read(uuid, 1)
    with pytest.raises(StoreUnavailable):
        area.read_range(uuid, 1, 0, 2)


def test_missing_everywhere_is_not_found_and_logs_nothing_above_debug(caplog):
    objects, file_system = sides()
    area = build_hybrid_area(objects, file_system, "WriteToObjectStorage")
    uuid = new_uuid()
    file_system.create(uuid, 3, b"header")
    with caplog.at_level(logging.DEBUG, logger="orthanc_objstore"):
        assert area.read(uuid, 3) == b"header"
        with pytest.raises(NotFound):
            area.read(new_uuid(), 1)
        area.remove(uuid, 3)
    assert caplog.records and all(record.levelno <= logging.DEBUG for record in caplog.records)


def test_a_read_racing_with_a_move_finds_the_file():
    """The primary misses, the move finishes (target written, source deleted), the secondary misses: the
    primary is asked again and has it."""
    objects, file_system = sides()
    uuid = new_uuid()

    class MovedDuringRead(ObjectArea):
        def read(self, uuid_, content_type, location=None):
            data = file_system.read(uuid_, content_type)
            objects.create(uuid_, content_type, data)  # the move job writes the target...
            file_system.remove(uuid_, content_type)  # ...then deletes the source
            return super().read(uuid_, content_type, location)

    file_system.create(uuid, 1, b"moving")
    racing_fs = MovedDuringRead(file_system.store, file_system.naming, "file-system")
    area = HybridArea(objects, racing_fs, file_system=racing_fs, object_storage=objects)
    assert area.read(uuid, 1) == b"moving"


def test_remove_tries_both_sides_then_reports():
    objects, file_system = sides()

    failing = ObjectArea(FaultyStore().fail("delete"), objects.naming)
    area = HybridArea(failing, file_system, file_system=file_system, object_storage=failing)
    uuid = new_uuid()
    file_system.create(uuid, 1, b"x")
    with pytest.raises(StoreUnavailable):
        area.remove(uuid, 1)
    assert file_system.store.keys() == []


@pytest.mark.parametrize("mode", ["WriteToFileSystem", "WriteToObjectStorage"])
def test_create_returns_the_primary_location_and_hints_reach_both_sides(mode):
    """create answers the primary's Location; objects written under another RootPath (so not where the
    names say) are found on either side through their hint only."""
    objects, file_system = sides()
    area = build_hybrid_area(objects, file_system, mode)
    uuid = new_uuid()
    location = area.create(uuid, 1, b"new")
    assert location == Location(area.primary.storage_name, area.primary.naming.key(uuid, 1))
    assert location.storage == (FILE_SYSTEM if mode == "WriteToFileSystem" else OBJECT_STORAGE)
    for side in (objects, file_system):
        elsewhere = ObjectArea(side.store, Naming(root_path="old"), storage_name=side.storage_name)
        moved = new_uuid()
        hint = elsewhere.create(moved, 1, b"0123456789")
        with pytest.raises(NotFound):
            area.read(moved, 1)
        assert area.read(moved, 1, location=hint) == b"0123456789"
        assert area.read_range(moved, 1, 2, 3, location=hint) == b"234"
        area.remove(moved, 1, location=hint)
        assert side.store.keys() == ([location.key] if side is area.primary else [])


def test_build_area_assembles_hybrid_with_orthanc_layout(tmp_path):
    settings = {"StorageDirectory": str(tmp_path / "storage"),
                "AwsS3Storage": {"BucketName": "b", "Region": "r", "HybridMode": "WriteToFileSystem"}}
    plugin_config, _ = config.parse(settings)
    area = build.build_area(plugin_config, store=MemoryStore())
    assert isinstance(area, HybridArea)
    uuid = new_uuid()
    area.create(uuid, 1, b"dicom")
    assert (tmp_path / "storage" / uuid[:2] / uuid[2:4] / uuid).read_bytes() == b"dicom"
    assert area.side("file-system") is area.primary and area.side("object-storage") is area.secondary

    settings["AwsS3Storage"] = {"BucketName": "b", "Region": "r", "MigrationFromFileSystemEnabled": True}
    area = build.build_area(config.parse(settings)[0], store=MemoryStore())
    assert area.primary is area.side("object-storage")
