"""End to end: large instances (multi-frame, tens of MB) through Orthanc on every provider, plain and
encrypted (A1, A2), and an instance above MaxConcurrentInputSize refused with nothing left behind.

36 MB is above every size at which a provider changes its way of working (S3's single PUT stays one
request; Azure: 8 MiB blocks and 8 MiB read ranges; GCS: a resumable upload in 32 MiB chunks), so each
upload and read crosses those boundaries. Peak memory and speed are measured by bench/large.py."""

import base64
import os

import pytest
from support.attachments import attachment_uuids
from support.dicom import large_instance
from support.orthanc import HttpError

from orthanc_objstore.crypto import formats as crypto

pytestmark = pytest.mark.orthanc

SIZE = 36_000_000


def encrypted_settings(orthanc, backend, fmt, **options):
    key = os.urandom(32)
    path = orthanc.write_file("large.key", base64.b64encode(key) + b"\n")
    return backend.settings(StorageEncryption={"MasterKey": [1, path], "Format": fmt, **options}), key


def dicom_object(orthanc, backend, instance, encrypted) -> bytes:
    uuid = next(uuid for uuid, kind in attachment_uuids(orthanc, instance) if kind == 1)
    return backend.read(f"{uuid}.dcm.enc" if encrypted else f"{uuid}.dcm")


@pytest.mark.parametrize("fmt", [None, "A1", "A2"])
def test_large_instance_round_trips_byte_for_byte(backend, orthanc_factory, fmt):
    dicom = large_instance(SIZE)
    orthanc = orthanc_factory({}, start=False)
    settings, key = encrypted_settings(orthanc, backend, fmt) if fmt else (backend.settings(), None)
    orthanc.config.update(settings)
    orthanc.start()

    instance = orthanc.upload(dicom)["ID"]
    stored = dicom_object(orthanc, backend, instance, encrypted=fmt is not None)
    if fmt is None:
        assert stored == dicom
    else:
        assert stored[:2] == fmt.encode() and dicom[1000:2000] not in stored
        assert crypto.decrypt(stored, crypto.Keyring(1, key)) == dicom
    del stored
    for _ in range(2):
        assert orthanc.get(f"/instances/{instance}/file") == dicom
    assert orthanc.get_json(f"/instances/{instance}/tags?simplify")["NumberOfFrames"] == str(round(SIZE / 2 ** 19))


def test_instance_above_max_concurrent_input_size_is_refused_and_nothing_stays(backend, orthanc_factory):
    orthanc = orthanc_factory({}, start=False)
    settings, key = encrypted_settings(orthanc, backend, "A2", MaxConcurrentInputSize=8)
    orthanc.config.update(settings)
    orthanc.start()

    with pytest.raises(HttpError):
        orthanc.upload(large_instance(10_000_000))
    assert orthanc.get_json("/instances") == []
    assert backend.keys() == []
    log = orthanc.log()
    assert "more than MaxConcurrentInputSize (8 MB); increase MaxConcurrentInputSize" in log
    assert key.hex() not in log and base64.b64encode(key).decode() not in log

    small = large_instance(5_000_000, uid_suffix=".2")  # under the budget, on the same Orthanc
    instance = orthanc.upload(small)["ID"]
    assert orthanc.get(f"/instances/{instance}/file") == small
    assert len(backend.keys()) == len(attachment_uuids(orthanc, instance))
