"""The owner of an object (issue 15) on the emulators: the metadata each provider records, and the paths the
conformance suite does not reach (S3's transfer manager, GCS without the metadata header).

A3's binding and the area's checks, in memory, are tests/unit/test_owner.py."""

import datetime
import os
import time
import uuid as uuidlib

import pytest

from orthanc_objstore.errors import OwnerlessObject, StoreError, WrongOwner
from orthanc_objstore.storage.cached import CachedStore, ReadCache
from orthanc_objstore.storage.protocol import (
    OWNER_MARK,
    OWNER_MARK_TEXT,
    OWNER_METADATA,
    OWNER_METADATA_AZURE,
    Owner,
)
from orthanc_objstore.storage.providers import gcs

UUID_A, UUID_B = "8a3e6a47-3c1d-4f1e-9a53-2f8d3c0b7e11", "0c1b2a39-7d4e-4b6f-8e1a-5c3d2b1a0f9e"


def test_metadata_as_each_sdk_sees_it(s3_backend, azure_backend, gcs_backend):
    owner = Owner(UUID_A, 1)
    for backend, name in ((s3_backend, OWNER_METADATA), (azure_backend, OWNER_METADATA_AZURE),
                          (gcs_backend, OWNER_METADATA)):
        key = f"meta/{uuidlib.uuid4()}.dcm"
        backend.store().put(key, b"data", owner=owner)
        assert backend.read_with_metadata(key) == (b"data", {name: f"{UUID_A}:1"}), backend.name


def test_s3_transfer_manager_checks_the_owner(s3_backend):
    store = s3_backend.store(max_retries=1, use_transfer_manager=True, transfer_buffer_size_mb=5, transfer_pool_size=2)
    data = os.urandom(12 * 1024 * 1024)  # multipart upload and parallel ranged download
    store.put("tm.dcm", data, owner=Owner(UUID_A, 1))
    assert store.get("tm.dcm", owner=Owner(UUID_A, 1)) == data
    with pytest.raises(WrongOwner, match=f"written for attachment {UUID_A} of type 1, not for attachment {UUID_B}"):
        store.get("tm.dcm", owner=Owner(UUID_B, 1))
    store.put("tm-legacy.dcm", data)
    assert store.get("tm-legacy.dcm", owner=Owner(UUID_B, 1)) == data


def test_gcs_without_the_metadata_header_asks_the_metadata(gcs_backend, monkeypatch):
    """A server that does not send x-goog-meta-* headers: the owner is still checked (one request more)."""
    store = gcs_backend.store(proxied=True)
    store.put("hidden.dcm", b"patient A", owner=Owner(UUID_A, 1))
    store.put("legacy.dcm", b"official plugin")
    gcs_backend.proxy.reset_counts()
    assert store.get("hidden.dcm", owner=Owner(UUID_A, 1)) == b"patient A"
    assert len(gcs_backend.proxy.requests) == 1  # the header said it
    monkeypatch.setattr(gcs._OwnedBlob, "_extract_headers_from_download",
                        lambda self, response: gcs.storage.Blob._extract_headers_from_download(self, response))
    gcs_backend.proxy.reset_counts()
    with pytest.raises(WrongOwner, match=UUID_B):
        store.get_range("hidden.dcm", 0, 4, owner=Owner(UUID_B, 1))
    assert len(gcs_backend.proxy.requests) == 2
    assert store.get("legacy.dcm", owner=Owner(UUID_B, 1)) == b"official plugin"


# The owner mark (issue 23 §3) on each provider: what build._mark_owners sets up at start-up, on the store alone.

def marked(backend):
    """A store of ``backend`` with its owner mark read or created, as at start-up (AcceptBeforeMark)."""
    store = backend.store()
    store.owners_since = store.mark_owners(OWNER_MARK)
    return store


def test_the_mark_is_created_once_and_shared(backend):
    first = marked(backend)
    assert backend.read(OWNER_MARK) == OWNER_MARK_TEXT
    time.sleep(1.1)  # S3's and Azure's Last-Modified have whole seconds: a second mark would be later
    second = marked(backend)  # another replica, or a restart
    assert second.owners_since == first.owners_since and first.owners_since is not None
    assert first.owners_since.tzinfo is not None


def test_ownerless_objects_written_after_the_mark_are_refused(backend):
    store = marked(backend)
    backend.write("bare.dcm", b"patient B's bytes")  # put back without metadata (a backup restore)
    for read in (lambda owner: store.get("bare.dcm", owner=owner),
                 lambda owner: store.get_range("bare.dcm", 2, 5, owner=owner)):
        with pytest.raises(OwnerlessObject) as caught:
            read(Owner(UUID_A, 1))
        assert f"for attachment {UUID_A} of type 1: the object has no owner record" in str(caught.value)
        assert OWNER_MARK in str(caught.value) and "verify --deep --stamp" in str(caught.value)
    assert store.get("bare.dcm") == b"patient B's bytes"  # reads without an owner (tools) check nothing
    store.put("owned.dcm", b"patient A's bytes", owner=Owner(UUID_A, 1))  # the plugin's own writes
    assert store.get("owned.dcm", owner=Owner(UUID_A, 1)) == b"patient A's bytes"
    assert store.get_range("owned.dcm", 8, 3, owner=Owner(UUID_A, 1)) == b"A's"


def test_ownerless_objects_older_than_the_mark_are_read(backend):
    backend.write("old.dcm", b"official plugin's object")
    time.sleep(1.1)
    store = marked(backend)
    assert store.get("old.dcm", owner=Owner(UUID_A, 1)) == b"official plugin's object"
    assert store.get_range("old.dcm", 0, 8, owner=Owner(UUID_A, 1)) == b"official"
    store.owners_since = datetime.datetime.min.replace(tzinfo=datetime.UTC)  # OwnerlessObjects Refuse
    with pytest.raises(OwnerlessObject, match="OwnerlessObjects is Refuse"):
        store.get("old.dcm", owner=Owner(UUID_A, 1))


def test_stamp_records_the_owner_keeping_the_rest(backend):
    store = marked(backend)
    backend.write("restored.dcm", b"put back in place", {"kept": "yes"} if backend.name != "s3" else None)
    version = store.object_version("restored.dcm")
    store.stamp_owner("restored.dcm", Owner(UUID_A, 1), version)
    data, metadata = backend.read_with_metadata("restored.dcm")
    name = OWNER_METADATA_AZURE if backend.name == "azure" else OWNER_METADATA
    assert data == b"put back in place" and metadata[name] == f"{UUID_A}:1"
    if backend.name != "s3":
        assert metadata["kept"] == "yes"  # a metadata-only update keeps the rest
    assert store.get("restored.dcm", owner=Owner(UUID_A, 1)) == b"put back in place"
    with pytest.raises(WrongOwner):
        store.get("restored.dcm", owner=Owner(UUID_B, 1))



def test_stamp_refuses_an_object_replaced_since_its_proof(azure_backend):
    """Only Azurite honours the condition: moto ignores CopySourceIfMatch and fake-gcs-server ifGenerationMatch
    on a patch (S3 and Cloud Storage honour both)."""
    store = marked(azure_backend)
    azure_backend.write("swapped.dcm", b"proven bytes")
    version = store.object_version("swapped.dcm")
    azure_backend.write("swapped.dcm", b"other bytes!")  # replaced between the proof and the stamp
    with pytest.raises(StoreError, match="changed since it was proven"):
        store.stamp_owner("swapped.dcm", Owner(UUID_A, 1), version)
    assert not azure_backend.read_with_metadata("swapped.dcm")[1]


def test_the_read_cache_never_serves_what_the_owner_checks_refuse(backend, tmp_path):
    """The read cache (on by default) in front of a marked store: a refused object is not kept, and a disk
    entry read under OwnerlessObjects Accept is not served after a start-up under the default."""
    mb, folder = 1024 * 1024, str(tmp_path / "cache")
    marked(backend)
    backend.write("bare.dcm", b"patient B's bytes")  # put back without metadata, after the mark
    cached = CachedStore(marked(backend), ReadCache(mb, mb, folder, mb))
    for _ in range(2):  # nothing kept by the first refusal
        with pytest.raises(OwnerlessObject):
            cached.get("bare.dcm", owner=Owner(UUID_A, 1))
    with pytest.raises(OwnerlessObject):
        cached.get_range("bare.dcm", 0, 7, owner=Owner(UUID_A, 1))

    accepting = CachedStore(backend.store(), ReadCache(mb, mb, folder, mb))  # a start-up under Accept
    assert accepting.get("bare.dcm", owner=Owner(UUID_A, 1)) == b"patient B's bytes"
    assert accepting.cache.disk_bytes > 0
    restarted = CachedStore(marked(backend), ReadCache(mb, mb, folder, mb))  # the default again
    with pytest.raises(OwnerlessObject):
        restarted.get("bare.dcm", owner=Owner(UUID_A, 1))
    with pytest.raises(OwnerlessObject):
        restarted.get_range("bare.dcm", 0, 7, owner=Owner(UUID_A, 1))
    assert restarted.cache.disk_bytes == 0
    again = CachedStore(backend.store(), ReadCache(mb, mb, folder, mb))  # Accept once more: read and kept
    assert again.get("bare.dcm", owner=Owner(UUID_A, 1)) == b"patient B's bytes"
