"""Failures never lose data (SPEC Q-1): the object store goes down, or hangs, during uploads and reads."""

import io
import zipfile

import pytest
from support.orthanc import (
    ARCHIVE_GUARD_OFF,
    HOST_VERSION,
    NEWEST_VERSION,
    HttpError,
    in_background,
    storescu,
    wait_for,
)

pytestmark = pytest.mark.orthanc


def test_store_down_during_upload(backend, orthanc_factory, dicom_files, orthanc_version):
    orthanc = orthanc_factory(backend.settings(), dicom=True)
    backend.proxy.mode = "down"
    with pytest.raises(HttpError) as caught:
        orthanc.upload(dicom_files[0][1])
    assert caught.value.status == (503 if orthanc_version == NEWEST_VERSION else 500)  # v3: "unavailable"
    result = storescu(orthanc.dicom_port, dicom_files[1][0])
    assert result.returncode != 0
    assert orthanc.get_json("/instances") == []

    backend.proxy.mode = "pass"
    assert orthanc.get_json("/statistics")["CountInstances"] == 0
    # Orthanc recovers by itself once the store answers again.
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    assert orthanc.get(f"/instances/{instance}/file") == dicom_files[0][1]
    assert len(backend.keys()) == len(orthanc.get_json(f"/instances/{instance}/attachments"))


# an upload writes two attachments only through the v1 API (1.10.1): 1.13 writes no header attachment
@pytest.mark.orthanc_versions(HOST_VERSION)
def test_store_fails_between_two_attachments_of_an_upload(backend, orthanc_factory, dicom_files):
    """The DICOM file is written, then the header attachment fails: Orthanc gives up without removing
    the DICOM file. The plugin removes it once Orthanc's index confirms nothing uses it."""
    orthanc = orthanc_factory(backend.settings())
    backend.proxy.match = b".dcm.head"
    backend.proxy.mode = "drop_matching"
    with pytest.raises(HttpError):
        orthanc.upload(dicom_files[0][1])
    assert orthanc.get_json("/instances") == []
    backend.proxy.mode = "pass"
    assert wait_for(lambda: backend.keys() == [], timeout=30), backend.keys()
    assert "removed the object left by a failed upload" in orthanc.log()


def test_store_fails_after_upload_keeps_referenced_files(backend, orthanc_factory, dicom_files):
    """A later failed create in the same thread must not remove a DICOM file that Orthanc kept."""
    orthanc = orthanc_factory(backend.settings())
    kept = orthanc.upload(dicom_files[0][1])["ID"]
    backend.proxy.mode = "down"
    with pytest.raises(HttpError):
        orthanc.upload(dicom_files[1][1])
    backend.proxy.mode = "pass"
    assert wait_for(lambda: len(backend.keys()) == len(orthanc.get_json(f"/instances/{kept}/attachments")),
                    timeout=30)
    orthanc.restart()
    assert orthanc.get(f"/instances/{kept}/file") == dicom_files[0][1]


def test_store_down_during_reads_is_an_error_never_bad_data(backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory(backend.settings())
    ids = [orthanc.upload(data)["ID"] for _, data in dicom_files[:2]]

    for mode in ("down", "cut_responses"):
        backend.proxy.mode = mode
        backend.proxy.cut_after = 3000  # headers and the start of the body, then the connection drops
        for path in (f"/instances/{ids[0]}/file", f"/instances/{ids[0]}/tags",
                     f"/instances/{ids[0]}/attachments/dicom/data"):
            with pytest.raises(HttpError) as caught:
                orthanc.get(path)
            assert caught.value.status >= 500, (mode, path)

    backend.proxy.mode = "pass"
    assert orthanc.get(f"/instances/{ids[0]}/file") == dicom_files[0][1]
    assert "test-secret-do-not-log" not in orthanc.log()


def zipped_files(body: bytes) -> list[bytes]:
    archive = zipfile.ZipFile(io.BytesIO(body))
    return [archive.read(name) for name in archive.namelist() if not name.endswith("/")]


def test_store_down_during_an_archive_is_an_error_never_an_incomplete_zip(backend, orthanc_factory, dicom_files,
                                                                          orthanc_version):
    """On 1.10.1 the archive guard answers 503 naming the unreadable files. On 1.13 it is off (the known
    gap, ARCHIVE_GUARD_OFF): the core answers 200 with the unreadable file left out, asserted as it is,
    so that this test fails, and says so, the day the guard works there."""
    orthanc = orthanc_factory(backend.settings())
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    study = orthanc.get_json(f"/instances/{instance}/study")["ID"]
    for mode in ("down", "cut_responses"):
        backend.proxy.mode = mode
        backend.proxy.cut_after = 3000
        if orthanc_version == NEWEST_VERSION:
            status, body = orthanc.request("GET", f"/studies/{study}/archive")
            assert (status, zipped_files(body)) == (200, []), (ARCHIVE_GUARD_OFF, mode, status, body[:300])
            continue
        with pytest.raises(HttpError) as caught:
            orthanc.get(f"/studies/{study}/archive")
        assert caught.value.status == 503, (mode, caught.value)
        assert b"could not be read" in caught.value.body
    backend.proxy.mode = "pass"
    assert zipped_files(orthanc.get(f"/studies/{study}/archive")) == [dicom_files[0][1]]


def test_store_down_during_delete_leaves_no_orphan(backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory(backend.settings())
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    backend.proxy.mode = "down"
    orthanc.delete(f"/instances/{instance}")  # Orthanc answers 200 and forgets the instance anyway
    assert orthanc.get_json("/instances") == []
    assert backend.keys() != []
    backend.proxy.mode = "pass"
    assert wait_for(lambda: backend.keys() == [], timeout=30), backend.keys()


# What makes a hung store's requests give up fast: a short RequestTimeout and no retries.
GIVE_UP_FAST = {"s3": {"RequestTimeout": 3, "MaxRetries": 0}, "azure": {"RequestTimeout": 3, "MaxRetries": 0},
                "gcs": {"RequestTimeout": 3, "RetryTimeout": 0}}


def test_a_hung_store_fails_its_requests_while_orthanc_keeps_answering(backend, orthanc_factory, dicom_files):
    """A store that keeps connections open and never answers (a stalled load balancer or network path):
    an upload and a read waiting on it fail once RequestTimeout has passed, Orthanc answers its other
    requests meanwhile, nothing half-written stays, and everything works again once the store answers."""
    orthanc = orthanc_factory(backend.settings(**GIVE_UP_FAST[backend.name]))
    (_, first), (_, second) = dicom_files[0], dicom_files[1]
    stored = orthanc.upload(first)["ID"]
    keys_before = backend.keys()

    backend.proxy.mode = "hold"
    upload, outcome = in_background(orthanc.upload, second)
    assert backend.proxy.held.wait(30), "the upload never reached the store"
    assert orthanc.get_json("/system")["Name"]  # asked while the upload waits on the hung store
    assert orthanc.get_json("/instances") == [stored]
    upload.join(60)
    assert outcome and isinstance(outcome[0], HttpError), outcome
    with pytest.raises(HttpError):
        orthanc.get(f"/instances/{stored}/file")  # a read of a hung store fails, it never hangs Orthanc

    backend.proxy.mode = "pass"
    assert orthanc.get_json("/instances") == [stored]
    assert backend.keys() == keys_before
    assert orthanc.get(f"/instances/{stored}/file") == first
    instance = orthanc.upload(second)["ID"]
    assert orthanc.get(f"/instances/{instance}/file") == second
