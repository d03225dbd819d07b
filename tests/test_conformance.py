"""Every store and every wrapper against the whole conformance suite (SPEC PROV-4, STYLE 7)."""

import os

import pytest

from orthanc_objstore.config import EncryptionConfig, MasterKey
from orthanc_objstore.encryption import EncryptedStore
from orthanc_objstore.stores.filesystem import FileSystemStore
from orthanc_objstore.stores.memory import MemoryStore
from orthanc_objstore.testing.conformance import CHECKS


def _encrypted(inner, fmt):
    key = MasterKey(7, "conformance.key", os.urandom(32))
    return EncryptedStore(inner, EncryptionConfig(key, (), 1024, fmt))


STORES = {
    "memory": lambda request: MemoryStore(),
    "filesystem": lambda request: FileSystemStore(str(request.getfixturevalue("tmp_path") / "store")),
    "s3": lambda request: request.getfixturevalue("s3_backend").store(),
    "encrypted-a1-memory": lambda request: _encrypted(MemoryStore(), "A1"),
    "encrypted-a2-memory": lambda request: _encrypted(MemoryStore(), "A2"),
    "encrypted-a1-s3": lambda request: _encrypted(request.getfixturevalue("s3_backend").store(), "A1"),
    "encrypted-a2-s3": lambda request: _encrypted(request.getfixturevalue("s3_backend").store(), "A2"),
}


@pytest.fixture(params=sorted(STORES))
def store(request):
    return STORES[request.param](request)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
def test_conformance(store, check):
    check(store)
