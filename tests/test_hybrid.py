"""HybridArea on memory stores: routing, NotFound-only fallback, quiet misses, and the area contract."""

import concurrent.futures
import logging
import os
import uuid as uuidlib

import pytest

from orthanc_objstore import build, config
from orthanc_objstore.area import ObjectArea
from orthanc_objstore.errors import IntegrityError, NotFound, StoreUnavailable
from orthanc_objstore.hybrid import HybridArea, build_hybrid_area
from orthanc_objstore.naming import LEGACY, Naming
from orthanc_objstore.stores.filesystem import FileSystemStore
from orthanc_objstore.stores.memory import MemoryStore


def sides():
    objects = ObjectArea(MemoryStore(), Naming())
    file_system = ObjectArea(MemoryStore(), Naming(structure=LEGACY), storage_name="file-system")
    return objects, file_system


def new_uuid():
    return str(uuidlib.uuid4())


class Broken(MemoryStore):
    """A store that is down for reads."""

    def get(self, key):
        raise StoreUnavailable("the store is down", key)

    get_range = head = lambda self, key, *args: self.get(key)


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
    broken = ObjectArea(Broken(), Naming())
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
            return super().read(uuid_, content_type)

    file_system.create(uuid, 1, b"moving")
    racing_fs = MovedDuringRead(file_system.store, file_system.naming, "file-system")
    area = HybridArea(objects, racing_fs, file_system=racing_fs, object_storage=objects)
    assert area.read(uuid, 1) == b"moving"


def test_remove_tries_both_sides_then_reports():
    objects, file_system = sides()

    class FailingRemove(ObjectArea):
        def remove(self, uuid, content_type, location=None):
            raise StoreUnavailable("down")

    failing = FailingRemove(objects.store, objects.naming)
    area = HybridArea(failing, file_system, file_system=file_system, object_storage=failing)
    uuid = new_uuid()
    file_system.create(uuid, 1, b"x")
    with pytest.raises(StoreUnavailable):
        area.remove(uuid, 1)
    assert file_system.store.keys() == []


AREAS = ["object", "WriteToFileSystem", "WriteToObjectStorage", "real-WriteToFileSystem", "real-WriteToObjectStorage"]


@pytest.fixture
def area_of(request, tmp_path):
    """Builds the area named by a test parameter: memory stores, or a real folder and S3 (moto)."""

    def make(kind):
        if kind.startswith("real-"):
            objects = ObjectArea(request.getfixturevalue("s3_backend").store(), Naming())
            file_system = ObjectArea(FileSystemStore(str(tmp_path / "storage"), fsync=False),
                                     Naming(structure=LEGACY), storage_name="file-system")
            return build_hybrid_area(objects, file_system, kind[len("real-"):])
        objects, file_system = sides()
        return objects if kind == "object" else build_hybrid_area(objects, file_system, kind)

    return make


@pytest.mark.parametrize("kind", AREAS)
def test_area_contract(kind, area_of):
    """The Area contract, the same for a plain object area and both hybrid modes."""
    area = area_of(kind)
    uuid, data = new_uuid(), os.urandom(10_000)
    area.create(uuid, 1, data)
    assert area.read(uuid, 1) == data
    assert area.read_range(uuid, 1, 1000, 10) == data[1000:1010]
    with pytest.raises(IntegrityError):
        area.read_range(uuid, 1, 9_995, 10)
    empty = new_uuid()
    area.create(empty, 2, b"")
    assert area.read(empty, 2) == b""
    missing = new_uuid()
    for operation in (lambda: area.read(missing, 1), lambda: area.read_range(missing, 1, 0, 1)):
        with pytest.raises(NotFound):
            operation()
    assert area.locate(missing, 1) == []
    assert len(area.locate(uuid, 1)) == 1
    area.remove(uuid, 1)
    area.remove(uuid, 1)
    with pytest.raises(NotFound):
        area.read(uuid, 1)


@pytest.mark.parametrize("kind", AREAS)
def test_area_concurrent_use(kind, area_of):
    area = area_of(kind)
    items = {new_uuid(): os.urandom(20_000 + i) for i in range(32)}

    def round_trip(item):
        uuid, data = item
        area.create(uuid, 1, data)
        assert area.read(uuid, 1) == data
        assert area.read_range(uuid, 1, 10, 100) == data[10:110]
        area.remove(uuid, 1)
        return uuid

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(round_trip, items.items())) == sorted(items)


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
