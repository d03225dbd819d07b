"""Every area runs every check of the area conformance suite (orthanc_objstore.testing.area_conformance)."""

import os

import pytest

from orthanc_objstore.areas.contract import FILE_SYSTEM, ObjectArea
from orthanc_objstore.areas.naming import LEGACY, Naming
from orthanc_objstore.build import build_hybrid_area
from orthanc_objstore.config.sections import MasterKey
from orthanc_objstore.crypto.keys import Keyring
from orthanc_objstore.storage.encrypted import EncryptedStore
from orthanc_objstore.storage.providers.filesystem import FileSystemStore
from orthanc_objstore.storage.providers.memory import MemoryStore
from orthanc_objstore.testing.area_conformance import CHECKS


def _object_memory(request, tmp_path):
    return ObjectArea(MemoryStore(), Naming())


def _object_encrypted_filesystem(request, tmp_path):
    key = MasterKey(3, "area-conformance.key", os.urandom(32))
    store = EncryptedStore(FileSystemStore(str(tmp_path / "encrypted"), fsync=False), Keyring(key.id, key.key), "A2")
    return ObjectArea(store, Naming(encrypted=True))


def _hybrid(mode, real):
    def make(request, tmp_path):
        if real:
            objects = ObjectArea(request.getfixturevalue("s3_backend").store(), Naming())
            file_system = ObjectArea(FileSystemStore(str(tmp_path / "storage"), fsync=False),
                                     Naming(structure=LEGACY), storage_name=FILE_SYSTEM)
        else:
            objects = ObjectArea(MemoryStore(), Naming())
            file_system = ObjectArea(MemoryStore(), Naming(structure=LEGACY), storage_name=FILE_SYSTEM)
        return build_hybrid_area(objects, file_system, mode)
    return make


AREAS = {"object-memory": _object_memory, "object-encrypted-filesystem": _object_encrypted_filesystem,
         "hybrid-WriteToFileSystem-memory": _hybrid("WriteToFileSystem", real=False),
         "hybrid-WriteToObjectStorage-memory": _hybrid("WriteToObjectStorage", real=False),
         "hybrid-WriteToFileSystem-filesystem-s3": _hybrid("WriteToFileSystem", real=True),
         "hybrid-WriteToObjectStorage-filesystem-s3": _hybrid("WriteToObjectStorage", real=True)}


@pytest.fixture(params=sorted(AREAS))
def area(request, tmp_path):
    return AREAS[request.param](request, tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__[len("check_"):])
def test_area_conformance(area, check):
    check(area)
