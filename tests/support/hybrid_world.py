"""In-memory doubles of a hybrid deployment: the two sides and their HybridArea, and a fake Orthanc index.

``HybridWorld`` is what the unit tests of the hybrid router, the move job, the routes, the tiering policy
and the area conformance suite all build: an object-storage side and a file-system side (Orthanc's legacy
layout), each a memory store unless given, and the hybrid area over them. ``FakeIndex`` is the index port
(``port.index.OrthancIndex``: level_of, exists, children, attachments) over a resource tree held in dicts,
whose attachments are written into an area as they are added.
"""

import dataclasses
import hashlib
import uuid as uuidlib

from orthanc_objstore.areas.contract import FILE_SYSTEM, OBJECT_STORAGE, Area, ObjectArea
from orthanc_objstore.areas.naming import LEGACY, Naming
from orthanc_objstore.build import build_hybrid_area
from orthanc_objstore.port.index import LEVELS, Attachment
from orthanc_objstore.storage.providers.memory import MemoryStore


def object_side(store=None) -> ObjectArea:
    """The object-storage side: official flat names, on ``store`` (a fresh MemoryStore by default)."""
    return ObjectArea(store if store is not None else MemoryStore(), Naming(), storage_name=OBJECT_STORAGE)


def file_system_side(store=None) -> ObjectArea:
    """The file-system side: Orthanc's own layout (``ab/cd/<uuid>``), on ``store`` (a MemoryStore by default)."""
    return ObjectArea(store if store is not None else MemoryStore(), Naming(structure=LEGACY),
                      storage_name=FILE_SYSTEM)


@dataclasses.dataclass
class HybridWorld:
    objects: ObjectArea
    file_system: ObjectArea
    area: Area  # the HybridArea over both
    mode: str

    def side(self, name: str) -> ObjectArea:
        return {OBJECT_STORAGE: self.objects, FILE_SYSTEM: self.file_system}[name]


def hybrid_world(mode: str = "WriteToFileSystem", objects: ObjectArea | None = None,
                 file_system: ObjectArea | None = None) -> HybridWorld:
    """Both sides (memory stores unless given) and the hybrid area of ``mode`` over them."""
    objects = objects if objects is not None else object_side()
    file_system = file_system if file_system is not None else file_system_side()
    return HybridWorld(objects, file_system, build_hybrid_area(objects, file_system, mode), mode)


class FakeIndex:
    """Orthanc's index as the move job asks it, over dicts: ``add`` a resource, ``attach`` its attachments."""

    def __init__(self):
        self.tree: dict[tuple[str, str], list[str]] = {}  # (level, id) → children's ids
        self.levels: dict[str, str] = {}                   # id → level
        self.records: dict[str, list[Attachment]] = {}     # id → its attachments

    def add(self, level: str, resource_id: str, children=()) -> None:
        self.levels[resource_id] = level
        self.tree[(level, resource_id)] = list(children)

    def attach(self, resource_id: str, area, content_type: int, data: bytes, resource: str | None = None,
               stored: bool = True) -> Attachment:
        """Records an attachment of ``resource_id`` (``resource``: the folder/id Orthanc names it by) and
        writes its bytes into ``area`` (unless ``stored`` is False: the index knows a file that is missing)."""
        uuid = str(uuidlib.uuid4())
        if stored:
            area.create(uuid, content_type, data)
        resource = resource or f"{LEVELS[self.levels[resource_id]].folder}/{resource_id}"
        record = Attachment(resource, uuid, content_type, len(data), hashlib.md5(data).hexdigest())
        self.records.setdefault(resource_id, []).append(record)
        return record

    def level_of(self, resource_id):
        return self.levels.get(resource_id)

    def exists(self, level, resource_id):
        return self.levels.get(resource_id) == level

    def children(self, level, resource_id):
        return self.tree.get((level, resource_id), [])

    def attachments(self, level, resource_id):
        return self.records.get(resource_id, [])

    def all(self) -> list[Attachment]:
        return [attachment for records in self.records.values() for attachment in records]


def patient_index(area) -> FakeIndex:
    """A patient p1 with one study s1, two series se1 and se2 of three instances each (i1…i6); an attachment
    at every level (type 0), a DICOM file and a DICOM header (types 1 and 3) per instance, all in ``area``."""
    index = FakeIndex()
    index.add("Patient", "p1", ["s1"])
    index.add("Study", "s1", ["se1", "se2"])
    index.add("Series", "se1", ["i1", "i2", "i3"])
    index.add("Series", "se2", ["i4", "i5", "i6"])
    for number in range(1, 7):
        index.add("Instance", f"i{number}")
    for resource_id, level in list(index.levels.items()):
        for kind in ((1, 3) if level == "Instance" else (0,)):
            index.attach(resource_id, area, kind, f"{resource_id} type {kind} ".encode() * 50)
    return index
