"""Every provider runs every check of the conformance suite (orthanc_objstore.testing.conformance), plain and
behind the encryption wrapper in every format, against its emulator; and the bucket checks over a bucket that
does not exist. The stores that need no server (memory, file system) are tests/unit/test_conformance.py."""

import pytest
from support.conformance_rows import cached, check_id, encrypted, matrix

from orthanc_objstore.testing.conformance import BUCKET_CHECKS, CHECKS


def _provider(backend_fixture):
    def make(request, tmp_path):
        return request.getfixturevalue(backend_fixture).store()
    return make


STORES = matrix({"s3": _provider("s3_backend"), "azure": _provider("azure_backend"), "gcs": _provider("gcs_backend")})
STORES["cached-s3"] = cached(_provider("s3_backend"))


def _missing_bucket(backend_fixture):
    def make(request, tmp_path):
        return request.getfixturevalue(backend_fixture).missing_bucket_store()
    return make


# Stores over a bucket/container that does not exist: every store that has one.
MISSING_BUCKET_STORES = {"s3": _missing_bucket("s3_backend"), "azure": _missing_bucket("azure_backend"),
                         "gcs": _missing_bucket("gcs_backend"),
                         "encrypted-a1-s3": encrypted(_missing_bucket("s3_backend"), "A1"),
                         "encrypted-a2-gcs": encrypted(_missing_bucket("gcs_backend"), "A2")}


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    return STORES[request.param](request, tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_conformance(store, check):
    check(store)


@pytest.mark.parametrize("check", BUCKET_CHECKS, ids=check_id)
@pytest.mark.parametrize("kind", sorted(MISSING_BUCKET_STORES))
def test_missing_bucket_conformance(kind, check, request, tmp_path):
    check(MISSING_BUCKET_STORES[kind](request, tmp_path))
