"""The storage callbacks without Orthanc: v3 error codes and custom data, and orphans of failed uploads."""

import struct
import threading
import zlib

import pytest
from support.faulty_store import FaultyStore

from orthanc_objstore.areas.contract import Location, ObjectArea
from orthanc_objstore.areas.naming import Naming
from orthanc_objstore.errors import IntegrityError, StoreUnavailable
from orthanc_objstore.orthanc_side.callbacks import ErrorCodes, StorageCallbacks
from orthanc_objstore.storage.providers.memory import MemoryStore

U1 = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
U2 = "1a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
U3 = "2a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
CODES = ErrorCodes(unavailable=1000001)


class Reaper:
    def __init__(self):
        self.scheduled = []

    def schedule(self, uuid, content_type):
        self.scheduled.append((uuid, content_type))


def refusing(suffix):
    """A store whose writes of keys ending in ``suffix`` fail (StoreUnavailable)."""
    return FaultyStore().fail("put", suffix=suffix)


def callbacks_over(store, compression=False):
    reaper = Reaper()
    return StorageCallbacks(ObjectArea(store, Naming()), reaper, CODES, storage_compression=compression), reaper


def test_v3_records_the_location_and_reads_with_it():
    callbacks, _ = callbacks_over(MemoryStore())
    create, read, remove = callbacks.v3()
    code, custom = create(U1, 1, 0, b"dicom bytes", None)
    assert code == 0 and Location.from_custom_data(custom, U1) == Location("object-storage", f"{U1}.dcm")
    assert read(U1, 1, 6, 5, custom) == (0, b"bytes")
    assert remove(U1, 1, custom) == 0
    assert read(U1, 1, 0, 5, custom) == (17, b"")  # gone: UnknownResource


@pytest.mark.parametrize("error, code", [(StoreUnavailable("timeout"), 1000001), (IntegrityError("bad tag", U1), 20),
                                         (PermissionError("no"), 32)])
def test_v3_error_codes(error, code):
    store = MemoryStore()
    store.put(f"{U1}.dcm", b"x")
    failing = FaultyStore().fail("put", suffix=".dcm", error=error).fail("get", "get_range", error=error)
    callbacks, _ = callbacks_over(failing)
    create, read, _ = callbacks.v3()
    assert create(U1, 1, 0, b"x", None) == (code, None)
    assert read(U1, 1, 0, 1, b"") == (code, b"")


def test_a_short_range_is_refused_as_corrupted():
    store = MemoryStore()
    callbacks, _ = callbacks_over(store)
    callbacks.create(U1, 1, b"abc")
    _, read, _ = callbacks.v3()
    assert read(U1, 1, 0, 10, b"")[0] == 20


DICOM = b"\0" * 128 + b"DICM" + b"header of patient A " * 40 + b"pixel data " * 1000
HEADER = DICOM[:900]


def test_a_failed_header_after_its_dicom_file_leaves_no_orphan():
    callbacks, reaper = callbacks_over(refusing(".dcm.head"))
    callbacks.create(U1, 1, DICOM)
    with pytest.raises(Exception, match="writing attachment"):
        callbacks.create(U2, 3, HEADER)
    assert reaper.scheduled == [(U2, 3), (U1, 1)]


def test_a_dicom_file_not_proved_to_be_the_uploads_is_kept():
    callbacks, reaper = callbacks_over(refusing(".dcm.head"))
    callbacks.create(U1, 1, DICOM)
    with pytest.raises(Exception):
        callbacks.create(U2, 3, HEADER.replace(b"patient A", b"patient B"))  # another file's header
    assert reaper.scheduled == [(U2, 3)]
    callbacks.create(U1, 1, DICOM)
    callbacks.create(U3, 0, b"an attachment of another kind in between")
    with pytest.raises(Exception):
        callbacks.create(U2, 3, HEADER)
    assert reaper.scheduled == [(U2, 3), (U2, 3)]


def test_a_failed_dicom_file_never_takes_the_previous_upload_with_it():
    store = FaultyStore()
    callbacks, reaper = callbacks_over(store)
    callbacks.create(U1, 1, DICOM)  # a successful upload
    store.fail("put", suffix=".dcm")
    with pytest.raises(Exception):
        callbacks.create(U2, 1, DICOM)
    assert reaper.scheduled == [(U2, 1)]


def test_uploads_in_other_threads_do_not_count():
    callbacks, reaper = callbacks_over(refusing(".dcm.head"))
    thread = threading.Thread(target=callbacks.create, args=(U1, 1, DICOM))
    thread.start()
    thread.join()
    with pytest.raises(Exception):
        callbacks.create(U2, 3, HEADER)
    assert reaper.scheduled == [(U2, 3)]


def compressed(data):
    return struct.pack("<Q", len(data)) + zlib.compress(data)


def test_with_storage_compression_the_header_is_compared_uncompressed():
    callbacks, reaper = callbacks_over(refusing(".dcm.head"), compression=True)
    callbacks.create(U1, 1, compressed(DICOM))
    with pytest.raises(Exception):
        callbacks.create(U2, 3, compressed(HEADER))
    assert reaper.scheduled == [(U2, 3), (U1, 1)]
