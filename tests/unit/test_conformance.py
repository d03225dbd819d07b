"""The stores that need no server run every check of the conformance suite (orthanc_objstore.testing.conformance):
memory and file system, plain and behind the encryption wrapper in every format. The providers' rows are
tests/providers/test_cloud_conformance.py."""

import pytest
from support.conformance_rows import cached, check_id, encrypted, matrix

from orthanc_objstore.storage.providers.filesystem import FileSystemStore
from orthanc_objstore.storage.providers.memory import MemoryStore
from orthanc_objstore.testing.conformance import CHECKS


def _memory(request, tmp_path):
    return MemoryStore()


def _filesystem(request, tmp_path):
    return FileSystemStore(str(tmp_path / "fs"), fsync=False)


STORES = matrix({"memory": _memory, "filesystem": _filesystem})
# the read cache, in memory and on disk, plain and under the encryption layer (which sits above it)
STORES.update({"cached-memory": cached(_memory), "cached-disk-memory": cached(_memory, disk=True, memory=0),
               "encrypted-a2-cached-memory": encrypted(cached(_memory), "A2"),
               "encrypted-a3-cached-disk-filesystem": encrypted(cached(_filesystem, disk=True), "A3")})


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    return STORES[request.param](request, tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_conformance(store, check):
    check(store)
