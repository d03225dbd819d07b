"""The area conformance suite: the ``Area`` contract as checks every area (plain, hybrid, …) must pass.

Each ``check_*`` function takes an area (empty or not: uuids are fresh per call) and raises
``AssertionError`` on a violation. ``CHECKS`` lists them all; ``tests/unit/test_area_conformance.py``
runs every check against every area that needs no server: ``ObjectArea`` over memory and over an
encrypted file system, the hybrid area in both modes over memory stores; and
``tests/providers/test_cloud_area_conformance.py`` the hybrid area over a file system plus S3 (moto).
It is the store suite (``testing.conformance``) one level up: the hybrid router wraps areas, not stores,
because its two sides name their files differently.

What a ``location`` hint must do, as the checks see it: the ``Location`` that ``create`` returns reads
the attachment back (also once it went through Orthanc's custom data); a hint naming another storage,
or the right storage with a key that holds nothing (stale), changes no answer; a hint never makes a
missing attachment look present.
"""

import concurrent.futures
import os
import uuid as uuidlib

from ..areas.contract import STORAGE_NAMES, Area, Location
from ..errors import IntegrityError, NotFound

DICOM = 1  # Orthanc gives every attachment its own uuid: one uuid, one content type (the file system
           # side of hybrid mode names files by uuid alone, as Orthanc does)


def _uuid() -> str:
    return str(uuidlib.uuid4())


def _stale_hints(uuid: str) -> list[Location]:
    """Hints that do not say where the attachment is: a storage that is no area's, and keys with nothing
    under them on each storage an area may hold (the hybrid area holds both)."""
    return ([Location("tape-library", f"elsewhere/{uuid}.dcm")]
            + [Location(storage, key) for storage in STORAGE_NAMES for key in (f"stale/{uuid}.dcm", uuid)])


def _assert_not_found(operation, what: str) -> None:
    try:
        operation()
    except NotFound:
        return
    raise AssertionError(f"{what} did not raise NotFound")


def check_round_trip_and_ranges(area: Area):
    uuid, data = _uuid(), os.urandom(10_000)
    area.create(uuid, DICOM, data)
    assert area.read(uuid, DICOM) == data
    assert area.read_range(uuid, DICOM, 1000, 10) == data[1000:1010]
    assert area.read_range(uuid, DICOM, 0, len(data)) == data
    assert area.read_range(uuid, DICOM, 5, 0) == b""
    assert len(area.locate(uuid, DICOM)) == 1


def check_range_past_end_is_an_error(area: Area):
    uuid = _uuid()
    area.create(uuid, DICOM, os.urandom(10_000))
    try:
        result = area.read_range(uuid, DICOM, 9_995, 10)
    except IntegrityError:
        return
    raise AssertionError(f"read_range(9995, 10) of 10000 bytes returned {len(result)} bytes")


def check_empty_attachment(area: Area):
    uuid = _uuid()
    area.create(uuid, 2, b"")
    assert area.read(uuid, 2) == b""


def check_returned_location_reads_back(area: Area):
    uuid, data = _uuid(), os.urandom(5_000)
    location = area.create(uuid, DICOM, data)
    assert isinstance(location, Location), f"create returned {location!r}, not a Location"
    assert location.storage in STORAGE_NAMES, f"unknown storage {location.storage!r}"
    assert (location.storage, location.key) in [(found.storage, found.key) for found in area.locate(uuid, DICOM)]
    # what Orthanc hands back is the custom data, parsed again
    recorded = Location.from_custom_data(location.to_custom_data(), uuid)
    assert recorded == location, f"{location!r} does not survive the custom data ({recorded!r})"
    assert area.read(uuid, DICOM, location=recorded) == data
    assert area.read_range(uuid, DICOM, 100, 50, location=recorded) == data[100:150]


def check_hint_naming_another_storage_is_ignored(area: Area):
    uuid, data = _uuid(), os.urandom(3_000)
    area.create(uuid, DICOM, data)
    hint = Location("tape-library", f"elsewhere/{uuid}.dcm")
    assert area.read(uuid, DICOM, location=hint) == data
    assert area.read_range(uuid, DICOM, 10, 20, location=hint) == data[10:30]


def check_stale_hint_falls_back(area: Area):
    uuid, data = _uuid(), os.urandom(3_000)
    area.create(uuid, DICOM, data)
    for hint in _stale_hints(uuid):
        assert area.read(uuid, DICOM, location=hint) == data, hint
        assert area.read_range(uuid, DICOM, 7, 70, location=hint) == data[7:77], hint


def check_remove_with_hint(area: Area):
    uuid = _uuid()
    location = area.create(uuid, DICOM, b"to be removed")
    area.remove(uuid, DICOM, location=location)
    _assert_not_found(lambda: area.read(uuid, DICOM), "reading a removed attachment")
    assert area.locate(uuid, DICOM) == []
    area.remove(uuid, DICOM, location=location)  # idempotent


def check_remove_with_stale_hint(area: Area):
    uuid = _uuid()
    returned = area.create(uuid, DICOM, b"to be removed")
    hints = _stale_hints(uuid)
    area.remove(uuid, DICOM, location=hints[0])
    _assert_not_found(lambda: area.read(uuid, DICOM, location=returned), "reading a removed attachment")
    for hint in hints[1:]:
        area.create(uuid, DICOM, b"written again")
        area.remove(uuid, DICOM, location=hint)
        assert area.locate(uuid, DICOM) == [], hint


def check_missing_attachment_is_not_found(area: Area):
    missing = _uuid()
    for hint in [None, *_stale_hints(missing)]:
        _assert_not_found(lambda hint=hint: area.read(missing, DICOM, location=hint),
                          f"read of a missing attachment ({hint})")
        _assert_not_found(lambda hint=hint: area.read_range(missing, DICOM, 0, 1, location=hint),
                          f"read_range of a missing attachment ({hint})")
    assert area.locate(missing, DICOM) == []


def check_remove_of_a_missing_attachment_is_fine(area: Area):
    missing = _uuid()
    area.remove(missing, DICOM)
    for hint in _stale_hints(missing):
        area.remove(missing, DICOM, location=hint)


def check_remove_is_idempotent(area: Area):
    uuid = _uuid()
    area.create(uuid, DICOM, b"x" * 100)
    area.remove(uuid, DICOM)
    area.remove(uuid, DICOM)
    _assert_not_found(lambda: area.read(uuid, DICOM), "reading a removed attachment")


def check_concurrent_use(area: Area):
    items = {_uuid(): os.urandom(20_000 + i) for i in range(32)}

    def round_trip(item):
        uuid, data = item
        location = area.create(uuid, DICOM, data)
        assert area.read(uuid, DICOM) == data
        assert area.read(uuid, DICOM, location=location) == data
        assert area.read_range(uuid, DICOM, 10, 100, location=location) == data[10:110]
        area.remove(uuid, DICOM, location=location)
        return uuid

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(round_trip, items.items())) == sorted(items)
    assert not any(area.locate(uuid, DICOM) for uuid in items)


CHECKS = [value for name, value in sorted(globals().items()) if name.startswith("check_")]
