"""End to end: Orthanc (1.10.1 and 1.13) stores encrypted objects (SPEC ENC-1..7), reads them back, survives a key rotation."""

import base64
import os
import struct

import pytest
from support.attachments import attachment_uuids, official_names, write_key
from support.official_a1 import official_decrypt
from support.orthanc import HttpError

pytestmark = pytest.mark.orthanc


def configured(orthanc, settings):
    orthanc.config.update(settings)
    return orthanc.start()


def encryption_settings(backend, **encryption):
    return backend.settings(StorageEncryption=encryption)


def test_encrypted_objects_rotation_and_official_format(backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory({}, start=False)
    key_1_path, key_1 = write_key(orthanc, "key-1.key")
    configured(orthanc, encryption_settings(backend, MasterKey=[1, key_1_path]))
    first = {orthanc.upload(data)["ID"]: data for _, data in dicom_files[:2]}

    uuids = [uuid for instance in first for uuid in attachment_uuids(orthanc, instance)]
    assert backend.keys() == official_names(uuids, encrypted=True)
    for instance, dicom in first.items():
        dicom_uuid = next(uuid for uuid, kind in attachment_uuids(orthanc, instance) if kind == 1)
        stored = backend.read(f"{dicom_uuid}.dcm.enc")
        assert stored != dicom and dicom[128:1000] not in stored
        assert stored[:6] == b"A1" + struct.pack("<I", 1) and len(stored) == len(dicom) + 86
        assert official_decrypt(stored, key_1) == dicom
        assert orthanc.get(f"/instances/{instance}/file") == dicom
        assert orthanc.get_json(f"/instances/{instance}/tags?simplify")["SOPInstanceUID"]

    key_2_path, key_2 = write_key(orthanc, "key-2.key")
    orthanc.config[backend.section]["StorageEncryption"] = {"MasterKey": [2, key_2_path],
                                                            "PreviousMasterKeys": [[1, key_1_path]]}
    orthanc.restart()
    for instance, dicom in first.items():
        assert orthanc.get(f"/instances/{instance}/file") == dicom
    path, dicom = dicom_files[2]
    new_instance = orthanc.upload(dicom)["ID"]
    new_uuid = next(uuid for uuid, kind in attachment_uuids(orthanc, new_instance) if kind == 1)
    stored = backend.read(f"{new_uuid}.dcm.enc")
    assert stored[:6] == b"A1" + struct.pack("<I", 2)
    assert official_decrypt(stored, key_2) == dicom
    assert orthanc.get(f"/instances/{new_instance}/file") == dicom

    # The previous key forgotten: old objects are refused with the missing id named, never returned wrong.
    orthanc.config[backend.section]["StorageEncryption"] = {"MasterKey": [2, key_2_path]}
    orthanc.restart()
    assert orthanc.get(f"/instances/{new_instance}/file") == dicom
    old_instance = next(iter(first))
    with pytest.raises(HttpError):
        orthanc.get(f"/instances/{old_instance}/file")
    log = orthanc.log()
    assert "master key id 1 " in log and "'01000000'" in log
    for key in (key_1, key_2):
        assert base64.b64encode(key).decode() not in log and key.hex() not in log

    for instance in list(first) + [new_instance]:
        orthanc.delete(f"/instances/{instance}")
    assert backend.keys() == []


def test_format_a2_through_orthanc(backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory({}, start=False)
    key_path, key = write_key(orthanc, "a2.key")
    configured(orthanc, encryption_settings(backend, MasterKey=[5, key_path], Format="A2"))
    _, dicom = dicom_files[1]
    instance = orthanc.upload(dicom)["ID"]
    dicom_uuid = next(uuid for uuid, kind in attachment_uuids(orthanc, instance) if kind == 1)
    stored = backend.read(f"{dicom_uuid}.dcm.enc")
    assert stored[:6] == b"A2" + struct.pack("<I", 5) and dicom[128:1000] not in stored
    assert orthanc.get(f"/instances/{instance}/file") == dicom

    # Switching back to A1 keeps A2 objects readable.
    orthanc.config[backend.section]["StorageEncryption"]["Format"] = "A1"
    orthanc.restart()
    assert orthanc.get(f"/instances/{instance}/file") == dicom


@pytest.mark.parametrize("content, problem", [(b"c2hvcnQ=\n", "holds 5 bytes"), (b"%%% not base64 %%%", "base64")])
def test_a_bad_key_file_refuses_start_up(backend, orthanc_factory, content, problem):
    orthanc = orthanc_factory({}, start=False)
    path = orthanc.write_file("bad.key", content)
    orthanc.config.update(encryption_settings(backend, MasterKey=[1, path]))
    assert orthanc.start(expect_failure=True) != 0
    log = orthanc.log()
    assert path in log and problem in log
    assert content.decode().strip() not in log
    assert backend.keys() == []


def test_a_missing_key_file_refuses_start_up(backend, orthanc_factory):
    orthanc = orthanc_factory({}, start=False)
    missing = os.path.join(orthanc.orthanc_workdir, "nowhere.key")
    orthanc.config.update(encryption_settings(backend, MasterKey=[1, missing]))
    assert orthanc.start(expect_failure=True) != 0
    assert missing in orthanc.log() and "cannot read the key file" in orthanc.log()
