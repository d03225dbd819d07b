"""The owner of an object (issue 15) on the emulators: the metadata each provider records, and the paths the
conformance suite does not reach (S3's transfer manager, GCS without the metadata header).

A3's binding and the area's checks, in memory, are tests/unit/test_owner.py."""

import os
import uuid as uuidlib

import pytest

from orthanc_objstore.errors import WrongOwner
from orthanc_objstore.storage.protocol import OWNER_METADATA, OWNER_METADATA_AZURE, Owner
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
