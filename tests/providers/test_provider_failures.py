"""S3, Azure and GCS stores through a FaultProxy: a failed write leaves nothing readable, a failed read is
an error (never short or empty data), and the store works again as soon as the server answers."""

import logging
import os
import uuid

import pytest
from s3transfer.exceptions import RetriesExceededError

from orthanc_objstore import build
from orthanc_objstore.config import sections as config
from orthanc_objstore.errors import ConfigError, NotFound, StoreError, StoreUnavailable
from orthanc_objstore.storage.protocol import exists

# Short retry budgets so that each failure is reported in seconds.
FAST = {"s3": {"max_retries": 1, "connect_timeout": 2, "request_timeout": 5},
        "azure": {"max_retries": 1, "connect_timeout": 2, "request_timeout": 5},
        "gcs": {"retry_timeout": 2, "connect_timeout": 2, "request_timeout": 5}}
LARGE = 20 * 1024 * 1024  # beyond one S3 PutObject, Azure Put Blob, GCS multipart upload: parts, blocks, chunks
# the request that would complete a large object: CompleteMultipartUpload (POST ?uploadId=), Put Block List,
# the last chunk of a resumable upload
COMPLETING = {"s3": b"?uploadId=", "azure": b"comp=blocklist", "gcs": b"upload_id="}


@pytest.fixture(params=["s3", "azure", "gcs"])
def cloud(request):
    backend = request.getfixturevalue(f"{request.param}_backend")
    return backend, backend.store(proxied=True, **FAST[request.param])


# S3's transfer manager: a large object goes up in parts (5 MiB), as in blocks (Azure) and resumable chunks (GCS)
S3_PARTS = {"use_transfer_manager": True, "transfer_buffer_size_mb": 5}


def key():
    return f"failures/{uuid.uuid4()}.dcm"


@pytest.mark.parametrize("size", [30_000, LARGE])
def test_server_down_during_write_leaves_no_object(cloud, size):
    backend, store = cloud
    name, data = key(), os.urandom(size)
    backend.proxy.mode = "down"
    with pytest.raises(StoreUnavailable):
        store.put(name, data)
    backend.proxy.mode = "pass"
    assert not exists(store, name)
    assert name not in backend.keys()
    store.put(name, data)
    assert store.get(name) == data


def test_large_upload_cut_before_it_completes_leaves_no_object(cloud):
    """Blocks/chunks/parts go up, then the request that would complete the object is dropped."""
    backend, store = cloud
    if backend.name == "s3":
        store = backend.store(proxied=True, **FAST["s3"], **S3_PARTS)
    name, data = key(), os.urandom(LARGE)
    backend.proxy.match = COMPLETING[backend.name]
    backend.proxy.mode = "drop_matching"
    with pytest.raises(StoreError):
        store.put(name, data)
    backend.proxy.mode = "pass"
    assert any(backend.proxy.match in line for line in backend.proxy.requests)
    with pytest.raises(NotFound):
        store.get(name)
    assert name not in backend.keys()


def test_overwrite_that_fails_keeps_the_previous_object(cloud):
    backend, store = cloud
    name = key()
    store.put(name, b"version one")
    backend.proxy.mode = "down"
    with pytest.raises(StoreUnavailable):
        store.put(name, b"version two, never stored")
    backend.proxy.mode = "pass"
    assert store.get(name) == b"version one"


@pytest.mark.parametrize("mode", ["down", "cut_responses"])
@pytest.mark.parametrize("size", [40_000, LARGE])
def test_failed_reads_are_errors_never_short_data(cloud, mode, size):
    backend, store = cloud
    name, data = key(), os.urandom(size)
    store.put(name, data)
    backend.proxy.cut_after = 3000  # the headers and the start of the body, then the connection drops
    backend.proxy.mode = mode
    for read in (lambda: store.get(name), lambda: store.get_range(name, 1000, 30_000)):
        with pytest.raises(StoreUnavailable):
            read()
    if mode == "down":
        with pytest.raises(StoreUnavailable):
            store.head(name)
        with pytest.raises(StoreUnavailable):
            store.delete(name)
    backend.proxy.mode = "pass"
    assert store.get(name) == data
    assert store.get_range(name, 1000, 30_000) == data[1000:31_000]


def test_errors_name_the_object_and_never_the_secret(cloud):
    backend, store = cloud
    name = key()
    backend.proxy.mode = "down"
    with pytest.raises(StoreUnavailable) as caught:
        store.put(name, b"x")
    message = str(caught.value)
    assert name in message and caught.value.key == name
    if backend.secret:
        assert backend.secret not in message and backend.secret not in repr(store)


def test_azure_creates_a_missing_container_once_and_warns_to_check_it_is_private(azure_backend, caplog):
    container = f"created-{uuid.uuid4().hex[:12]}"
    section = azure_backend.settings(ContainerName=container)
    parsed = config.parse(section)[0]
    with caplog.at_level(logging.WARNING, logger="orthanc_objstore"):
        store = build.provider_store(parsed)
        build.provider_store(parsed)  # already there: no second warning
    warnings = [record.getMessage() for record in caplog.records if container in record.getMessage()]
    assert len(warnings) == 1 and "private" in warnings[0]
    assert azure_backend.secret not in caplog.text
    store.put("probe", b"ok")
    assert store.get("probe") == b"ok"
    azure_backend.azurite.client().delete_container(container)


def test_a_missing_container_or_bucket_refuses_start_up(s3_backend, azure_backend, gcs_backend, monkeypatch):
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    s3 = config.parse(s3_backend.settings(BucketName=missing))[0]
    azure = config.parse(azure_backend.settings(ContainerName=missing, CreateContainerIfNotExists=False))[0]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_backend.proxy.url)
    gcs = config.parse(gcs_backend.settings(BucketName=missing))[0]
    for parsed in (s3, azure, gcs):
        with pytest.raises(ConfigError) as caught:
            build.provider_store(parsed)
        assert missing in str(caught.value) and "does not exist" in str(caught.value)


def test_a_store_that_is_down_at_start_up_does_not_stop_orthanc(s3_backend, azure_backend, gcs_backend, monkeypatch,
                                                               caplog):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_backend.proxy.url)
    s3_backend.proxy.mode = azure_backend.proxy.mode = gcs_backend.proxy.mode = "down"
    for backend, fast in ((s3_backend, {"MaxRetries": 0}), (azure_backend, {"MaxRetries": 0}),
                          (gcs_backend, {"RetryTimeout": 0})):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="orthanc_objstore"):
            store = build.provider_store(config.parse(backend.settings(**fast))[0])
        assert f"{backend.section}: could not check the bucket at start-up" in caplog.text
        backend.proxy.mode = "pass"
        store.put("after-start", b"ok")
        assert store.get("after-start") == b"ok"


@pytest.mark.xfail(strict=True, raises=RetriesExceededError, reason="known gap: with UseTransferManager a read whose response "
                   "is cut raises s3transfer's RetriesExceededError, untranslated, instead of StoreUnavailable")
@pytest.mark.parametrize("size", [40_000, LARGE])
def test_s3_transfer_manager_cut_read_is_unavailable(s3_backend, size):
    store = s3_backend.store(proxied=True, **FAST["s3"], **S3_PARTS)
    name, data = key(), os.urandom(size)
    store.put(name, data)
    s3_backend.proxy.cut_after = 3000
    s3_backend.proxy.mode = "cut_responses"
    try:
        with pytest.raises(StoreUnavailable):
            store.get(name)
    finally:
        s3_backend.proxy.mode = "pass"
    assert store.get(name) == data
