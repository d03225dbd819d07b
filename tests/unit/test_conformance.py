"""The stores that need no server run every check of the conformance suite (orthanc_objstore.testing.conformance):
memory and file system, plain and behind the encryption wrapper in every format. The providers' rows are
tests/providers/test_cloud_conformance.py."""

import pytest
from support.conformance_rows import check_id, matrix

from orthanc_objstore.storage.providers.filesystem import FileSystemStore
from orthanc_objstore.storage.providers.memory import MemoryStore
from orthanc_objstore.testing.conformance import CHECKS


def _memory(request, tmp_path):
    return MemoryStore()


def _filesystem(request, tmp_path):
    return FileSystemStore(str(tmp_path / "fs"), fsync=False)


STORES = matrix({"memory": _memory, "filesystem": _filesystem})


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    return STORES[request.param](request, tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_conformance(store, check):
    check(store)
