"""Every store and wrapper runs every check of the conformance suite (orthanc_objstore.testing.conformance)."""

import pytest

from orthanc_objstore.stores.filesystem import FileSystemStore
from orthanc_objstore.stores.memory import MemoryStore
from orthanc_objstore.testing.conformance import CHECKS


def _memory(request, tmp_path):
    return MemoryStore()


def _filesystem(request, tmp_path):
    return FileSystemStore(str(tmp_path / "fs"), fsync=False)


def _s3(request, tmp_path):
    return request.getfixturevalue("s3_backend").store()


STORES = {"memory": _memory, "filesystem": _filesystem, "s3": _s3}


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    return STORES[request.param](request, tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__[len("check_"):])
def test_conformance(store, check):
    check(store)
