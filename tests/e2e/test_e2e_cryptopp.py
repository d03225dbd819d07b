"""End to end: an object written by Crypto++ (the official plugin's library, through build/a1_cryptopp) put in
the bucket under an attachment's name is read through Orthanc (1.10.1 and 1.13); what Orthanc wrote, Crypto++ reads."""

import os
import struct

import pytest
from support import cryptopp
from support.attachments import attachment_uuids
from support.backends import predate_owner_mark

pytestmark = pytest.mark.orthanc


def test_an_object_written_by_cryptopp_is_read_through_orthanc(s3_backend, orthanc_factory, dicom_files):
    tool = cryptopp.binary()  # before any Orthanc: a missing program fails (CI) or skips (dev) at once
    assert os.access(tool, os.X_OK)
    orthanc = orthanc_factory({}, start=False)
    key_path = orthanc.write_file("master.key", b"")  # the path Orthanc sees; the same file on the host:
    key_file = cryptopp.write_key_file(orthanc.host_path(key_path), os.urandom(32))
    orthanc.config.update(s3_backend.settings(StorageEncryption={"MasterKey": [3, key_path]}))
    orthanc.start()
    _, dicom = dicom_files[0]
    instance = orthanc.upload(dicom)["ID"]
    uuid = next(uuid for uuid, kind in attachment_uuids(orthanc, instance) if kind == 1)
    name = f"{uuid}.dcm.enc"

    by_plugin = s3_backend.read(name)
    assert cryptopp.decrypt(by_plugin, 3, key_file) == dicom

    by_cryptopp = cryptopp.encrypt(dicom, 3, key_file)
    assert by_cryptopp[:6] == b"A1" + struct.pack("<I", 3) and by_cryptopp != by_plugin  # fresh IV and data key
    s3_backend.write(name, by_cryptopp)
    predate_owner_mark(s3_backend)  # as the official plugin wrote it: no owner record, before the mark
    orthanc.restart()  # nothing cached (and MaximumStorageCacheSize is 0): the read reaches the bucket
    assert s3_backend.read(name) == by_cryptopp
    assert orthanc.get(f"/instances/{instance}/file") == dicom
    assert orthanc.get_json(f"/instances/{instance}/tags?simplify")["SOPInstanceUID"]
