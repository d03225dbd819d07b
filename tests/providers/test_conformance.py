"""Every store and wrapper runs every check of the conformance suite (orthanc_objstore.testing.conformance)."""

import os

import pytest

from orthanc_objstore.config.sections import EncryptionConfig, MasterKey
from orthanc_objstore.storage.cached import CachedStore, ReadCache
from orthanc_objstore.storage.encrypted import EncryptedStore
from orthanc_objstore.storage.providers.filesystem import FileSystemStore
from orthanc_objstore.storage.providers.memory import MemoryStore
from orthanc_objstore.testing.conformance import BUCKET_CHECKS, CHECKS


def _memory(request, tmp_path):
    return MemoryStore()


def _filesystem(request, tmp_path):
    return FileSystemStore(str(tmp_path / "fs"), fsync=False)


def _s3(request, tmp_path):
    return request.getfixturevalue("s3_backend").store()


def _azure(request, tmp_path):
    return request.getfixturevalue("azure_backend").store()


def _gcs(request, tmp_path):
    return request.getfixturevalue("gcs_backend").store()


def _encrypted(inner, encryption_format):
    def make(request, tmp_path):
        key = MasterKey(7, "conformance.key", os.urandom(32))
        return EncryptedStore(inner(request, tmp_path), EncryptionConfig(key, (), 1024, encryption_format))
    return make


def _cached(inner, disk=False, memory=64 * 2**20):
    """``inner`` behind the read cache (in memory, or on disk with a memory cache too small for anything)."""
    def make(request, tmp_path):
        cache = ReadCache(memory, 64 * 2**20, str(tmp_path / "cache") if disk else "", 256 * 2**20)
        return CachedStore(inner(request, tmp_path), cache)
    return make


STORES = {"memory": _memory, "filesystem": _filesystem, "s3": _s3, "azure": _azure, "gcs": _gcs,
          "encrypted-a1-memory": _encrypted(_memory, "A1"), "encrypted-a2-memory": _encrypted(_memory, "A2"),
          "encrypted-a1-filesystem": _encrypted(_filesystem, "A1"),
          "encrypted-a2-filesystem": _encrypted(_filesystem, "A2"),
          "encrypted-a1-s3": _encrypted(_s3, "A1"), "encrypted-a2-s3": _encrypted(_s3, "A2"),
          "encrypted-a3-memory": _encrypted(_memory, "A3"), "encrypted-a3-filesystem": _encrypted(_filesystem, "A3"),
          "encrypted-a3-azure": _encrypted(_azure, "A3"), "encrypted-a1-gcs": _encrypted(_gcs, "A1"),
          "cached-memory": _cached(_memory), "cached-disk-memory": _cached(_memory, disk=True, memory=0),
          "encrypted-a2-cached-memory": _encrypted(_cached(_memory), "A2"),
          "encrypted-a3-cached-disk-filesystem": _encrypted(_cached(_filesystem, disk=True), "A3"),
          "cached-s3": _cached(_s3)}


def _missing_bucket(backend_fixture):
    def make(request, tmp_path):
        return request.getfixturevalue(backend_fixture).missing_bucket_store()
    return make


# Stores over a bucket/container that does not exist: every store that has one.
MISSING_BUCKET_STORES = {"s3": _missing_bucket("s3_backend"), "azure": _missing_bucket("azure_backend"),
                         "gcs": _missing_bucket("gcs_backend"),
                         "encrypted-a1-s3": _encrypted(_missing_bucket("s3_backend"), "A1"),
                         "encrypted-a2-gcs": _encrypted(_missing_bucket("gcs_backend"), "A2")}


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    return STORES[request.param](request, tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__[len("check_"):])
def test_conformance(store, check):
    check(store)


@pytest.mark.parametrize("check", BUCKET_CHECKS, ids=lambda check: check.__name__[len("check_"):])
@pytest.mark.parametrize("kind", sorted(MISSING_BUCKET_STORES))
def test_missing_bucket_conformance(kind, check, request, tmp_path):
    check(MISSING_BUCKET_STORES[kind](request, tmp_path))
