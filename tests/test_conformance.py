"""Every store runs every check of the conformance suite: the protocol's contract, not a chosen subset."""

import pytest

from orthanc_objstore.stores.filesystem import FileSystemStore
from orthanc_objstore.stores.memory import MemoryStore
from orthanc_objstore.testing.conformance import CHECKS

STORES = ["memory", "filesystem", "s3", "azure", "gcs"]


@pytest.fixture(params=STORES)
def store(request, tmp_path):
    """Each store in turn: in-process ones, then each provider against its local server."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "filesystem":
        return FileSystemStore(str(tmp_path / "storage"))
    return request.getfixturevalue(f"{request.param}_backend").store()


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
def test_conformance(store, check):
    check(store)
