"""What the Azure and GCS stores promise beyond the conformance suite, seen in the requests they send
(through the backend's FaultProxy in "pass" mode): blocks / resumable uploads for large objects, one
request per read (Azure: one per 8 MiB range), the access tier."""

import os
import uuid

import pytest

LARGE = 20 * 1024 * 1024


def requests_during(backend, action):
    before = len(backend.proxy.requests)
    action()
    return backend.proxy.requests[before:]


def test_azure_large_blob_goes_up_in_blocks_and_small_in_one_request(azure_backend):
    store = azure_backend.store(proxied=True)
    large, small = f"large/{uuid.uuid4()}", f"small/{uuid.uuid4()}"
    data = os.urandom(LARGE)
    sent = requests_during(azure_backend, lambda: store.put(large, data))
    assert sum(b"comp=block&" in line or b"comp=block " in line for line in sent) == 5  # 5 x 4 MiB
    assert sum(b"comp=blocklist" in line for line in sent) == 1
    assert store.get(large) == data
    sent = requests_during(azure_backend, lambda: store.put(small, b"small"))
    assert len(sent) == 1 and sent[0].startswith(b"PUT ")


def test_gcs_large_object_is_a_resumable_upload_small_one_a_single_request(gcs_backend):
    store = gcs_backend.store(proxied=True)
    large, small = f"large/{uuid.uuid4()}", f"small/{uuid.uuid4()}"
    data = os.urandom(2 * LARGE)
    sent = requests_during(gcs_backend, lambda: store.put(large, data))
    assert sum(b"uploadType=resumable" in line and line.startswith(b"POST ") for line in sent) == 1
    assert sum(b"upload_id=" in line and line.startswith(b"PUT ") for line in sent) == 2  # 32 + 8 MiB chunks
    assert store.get(large) == data
    sent = requests_during(gcs_backend, lambda: store.put(small, b"small"))
    assert len(sent) == 1 and b"uploadType=multipart" in sent[0]


def test_gcs_whole_and_range_reads_are_one_request_each(gcs_backend):
    store = gcs_backend.store(proxied=True)
    key, data = f"reads/{uuid.uuid4()}", os.urandom(LARGE)
    store.put(key, data)
    sent = requests_during(gcs_backend, lambda: store.get(key))
    assert len(sent) == 1 and sent[0].startswith(b"GET ")
    sent = requests_during(gcs_backend, lambda: store.get_range(key, 5_000_000, 1000))
    assert len(sent) == 1 and sent[0].startswith(b"GET ")


def test_azure_reads_a_large_blob_in_8_mib_ranges_and_a_small_one_in_one_request(azure_backend):
    store = azure_backend.store(proxied=True)
    large, small = f"reads/{uuid.uuid4()}", f"reads/{uuid.uuid4()}"
    data = os.urandom(LARGE)
    store.put(large, data)
    store.put(small, b"small")
    sent = requests_during(azure_backend, lambda: store.get(large))
    assert len(sent) == 3 and all(line.startswith(b"GET ") for line in sent)  # 8 + 8 + 4 MiB
    sent = requests_during(azure_backend, lambda: store.get(small))
    assert len(sent) == 1 and sent[0].startswith(b"GET ")
    sent = requests_during(azure_backend, lambda: store.get_range(large, 5_000_000, 1000))
    assert len(sent) == 1 and sent[0].startswith(b"GET ")


def test_azure_blob_replaced_during_a_ranged_read_fails_the_read_never_mixes_versions(azure_backend):
    from orthanc_objstore.errors import StoreUnavailable
    from orthanc_objstore.storage.providers import azure

    assert azure.READ_RANGE_SIZE < LARGE  # so that the read takes more than one range
    store = azure_backend.store()
    key, first, second = f"reads/{uuid.uuid4()}", os.urandom(LARGE), os.urandom(LARGE)
    store.put(key, first)
    download = store._container.download_blob

    def replaced_after_the_first_range(*args, **kwargs):
        downloader = download(*args, **kwargs)  # the first 8 MiB have arrived
        azure_backend.write(key, second)
        return downloader

    store._container.download_blob = replaced_after_the_first_range
    with pytest.raises(StoreUnavailable, match="replaced while it was being read"):
        store.get(key)
    store._container.download_blob = download
    assert store.get(key) == second


@pytest.mark.parametrize("tier", ["Hot", "Cool", "Cold", "Archive"])  # "Premium": premium accounts only
def test_azure_access_tier_is_set_on_upload(azure_backend, tier):
    store = azure_backend.store(access_tier=tier)
    store.put("tiered.dcm", b"data")
    properties = azure_backend.client.get_blob_client("tiered.dcm").get_blob_properties()
    assert properties.blob_tier == tier


def test_azure_with_a_container_sas_starts_and_works(azure_backend, caplog):
    """A SAS limited to one container cannot create containers: start-up warns, then reads/writes work."""
    import datetime
    import logging

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from orthanc_objstore import build
    from orthanc_objstore.config import sections as config

    sas = generate_container_sas(
        "devstoreaccount1", azure_backend.container, account_key=azure_backend.secret,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, create=True),
        expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
    endpoint = f"http://127.0.0.1:{azure_backend.azurite.port}/devstoreaccount1"
    section = {"AzureBlobStorage": {"ConnectionString": f"BlobEndpoint={endpoint};SharedAccessSignature={sas}",
                                    "ContainerName": azure_backend.container, "MaxRetries": 0}}
    with caplog.at_level(logging.WARNING, logger="orthanc_objstore"):
        store = build.provider_store(config.parse(section)[0])
    assert "could not check the bucket at start-up" in caplog.text and "access denied" in caplog.text
    assert sas not in caplog.text
    store.put("sas/object.dcm", b"written with a SAS")
    assert store.get("sas/object.dcm") == b"written with a SAS"
    assert azure_backend.read("sas/object.dcm") == b"written with a SAS"


@pytest.mark.parametrize("answer, expected, asks_the_bucket", [
    ("GET https://storage.googleapis.com/download/storage/v1/b/b/o/k?alt=media: No such object: b/k", "NotFound", False),
    ("GET https://storage.googleapis.com/storage/v1/b/b/o/k: The specified bucket does not exist.", "BucketNotFound",
     False),
    ("GET http://127.0.0.1:4443/storage/v1/b/b/o/k: Not Found", "NotFound", True),  # fake-gcs-server, bucket there
])
def test_gcs_tells_a_missing_bucket_from_a_missing_object(answer, expected, asks_the_bucket):
    """By Google's wording when there is one, else by asking the bucket (fake-gcs-server words both "Not Found")."""
    from google.api_core import exceptions as api_exceptions

    from orthanc_objstore.storage.providers.gcs import _translate
    asked = []
    error = _translate(api_exceptions.NotFound(answer), "k", "read", bucket_exists=lambda: asked.append(1) or True)
    assert type(error).__name__ == expected and bool(asked) == asks_the_bucket
    missing = _translate(api_exceptions.NotFound("Not Found"), "k", "read", bucket_exists=lambda: False)
    assert type(missing).__name__ == "BucketNotFound"

