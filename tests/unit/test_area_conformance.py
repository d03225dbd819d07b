"""The areas that need no server run every check of the area conformance suite
(orthanc_objstore.testing.area_conformance): ObjectArea over memory and over an encrypted file system, the
hybrid area in both modes over memory stores. The hybrid area over a file system plus S3 is
tests/providers/test_cloud_area_conformance.py."""

import os

import pytest
from support.conformance_rows import check_id
from support.hybrid_world import hybrid_world

from orthanc_objstore.areas.contract import ObjectArea
from orthanc_objstore.areas.naming import Naming
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


def _hybrid_memory(mode):
    def make(request, tmp_path):
        return hybrid_world(mode).area
    return make


AREAS = {"object-memory": _object_memory, "object-encrypted-filesystem": _object_encrypted_filesystem,
         "hybrid-WriteToFileSystem-memory": _hybrid_memory("WriteToFileSystem"),
         "hybrid-WriteToObjectStorage-memory": _hybrid_memory("WriteToObjectStorage")}


@pytest.fixture(params=sorted(AREAS))
def area(request, tmp_path):
    return AREAS[request.param](request, tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_area_conformance(area, check):
    check(area)
