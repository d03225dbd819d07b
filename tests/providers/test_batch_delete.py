"""BatchDelete against the emulators: S3 DeleteObjects (moto), Azure blob batch (Azurite), GCS batch requests
(fake-gcs-server answers none: the store falls back to one delete per object, and says so)."""

import pytest

from orthanc_objstore.storage.protocol import BatchDelete, delete_keys

pytestmark = pytest.mark.providers


def test_batch_delete_removes_exactly_the_keys_given(backend):
    store = backend.store()
    assert isinstance(store, BatchDelete)
    keys = [f"batch/{i:04d}.dcm" for i in range(260)]  # more than one Azure batch (256)
    for key in keys + ["batch/kept.dcm"]:
        store.put(key, b"x")
    assert delete_keys(store, keys + ["batch/missing.dcm"]) == {}  # a missing object counts as deleted
    assert [key for key in backend.keys() if key.startswith("batch/")] == ["batch/kept.dcm"]
    assert delete_keys(store, ["batch/kept.dcm"]) == {}
    assert [key for key in backend.keys() if key.startswith("batch/")] == []


def proxied_store(backend):
    """The backend's store through its fault proxy, giving up fast."""
    if backend.section == "AwsS3Storage":
        from orthanc_objstore.config.sections import S3Config
        from orthanc_objstore.storage.providers.s3 import S3Store
        return S3Store(S3Config(bucket_name=backend.bucket, region="us-east-1", endpoint=backend.proxy.url,
                                access_key="test", secret_key="test", virtual_addressing=False, max_retries=0))
    if backend.section == "AzureBlobStorage":
        return backend.store(proxied=True, max_retries=0)
    return backend.store(proxied=True, retry_timeout=1)


def test_a_store_that_is_down_fails_the_batch_and_deletes_nothing(backend):
    store = proxied_store(backend)
    store.put("down/a.dcm", b"x")
    backend.proxy.mode = "down"
    try:
        failed = delete_keys(store, ["down/a.dcm"])
    finally:
        backend.proxy.mode = "pass"
    assert list(failed) == ["down/a.dcm"]
    assert "down/a.dcm" in backend.keys()
    assert delete_keys(store, ["down/a.dcm"]) == {}
