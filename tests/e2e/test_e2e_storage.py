"""End to end: Orthanc loads the installed plugin and keeps its files in object storage.

Every test runs on the host's Orthanc 1.10.1 (v1 storage API) and on Orthanc 1.13 in the forky
chroot (v3 API), through ``orthanc_factory``. Expected object names are derived from Orthanc's own
attachment list: with v3 and no compression, 1.13 stores no header attachment (type 3)."""

import io
import zipfile

import pytest
from support.attachments import attachment_uuids, official_names
from support.backends import predate_owner_mark
from support.orthanc import HOST_VERSION, NEWEST_VERSION, HttpError, storescu

pytestmark = pytest.mark.orthanc


def test_upload_read_delete_over_rest(backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory(backend.settings())
    path, dicom = dicom_files[0]
    instance = orthanc.upload(dicom)["ID"]

    assert orthanc.get(f"/instances/{instance}/file") == dicom
    tags = orthanc.get_json(f"/instances/{instance}/tags?simplify")
    assert tags["SOPInstanceUID"]
    uuids = attachment_uuids(orthanc, instance)
    # v3 reads the header as a range of the DICOM file, so Orthanc no longer keeps it apart
    assert {kind for _, kind in uuids} == ({1} if orthanc.storage_api == "v3" else {1, 3})
    assert backend.keys() == official_names(uuids)
    dicom_uuid = next(uuid for uuid, kind in uuids if kind == 1)
    assert backend.read(f"{dicom_uuid}.dcm") == dicom

    orthanc.delete(f"/instances/{instance}")
    assert backend.keys() == []
    assert "Error in the Python" not in orthanc.log()


def test_c_store_archive_restart(backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory(backend.settings(), dicom=True)
    result = storescu(orthanc.dicom_port, dicom_files[0][0])
    assert result.returncode == 0, result.stderr
    for _, data in dicom_files[1:3]:
        orthanc.upload(data)
    instances = orthanc.get_json("/instances")
    assert len(instances) == 3
    stored = {instance: orthanc.get(f"/instances/{instance}/file") for instance in instances}
    for _, data in dicom_files[1:3]:
        assert data in stored.values()

    archived = []
    for patient in orthanc.get_json("/patients"):
        archive = zipfile.ZipFile(io.BytesIO(orthanc.get(f"/patients/{patient}/archive")))
        archived += [archive.read(name) for name in archive.namelist() if not name.endswith("/")]
    assert sorted(archived) == sorted(stored.values())

    all_uuids = [uuid for instance in instances for uuid in attachment_uuids(orthanc, instance)]
    assert backend.keys() == official_names(all_uuids)

    orthanc.restart()
    for instance in instances:
        assert orthanc.get(f"/instances/{instance}/file") == stored[instance]
        assert orthanc.get_json(f"/instances/{instance}/tags?simplify")["SOPInstanceUID"]


def test_storage_compression_and_custom_attachment(backend, orthanc_factory, dicom_files):
    settings = backend.settings()
    settings.update({"StorageCompression": True, "UserContentType": {"myblob": [1025, "text/plain"]}})
    orthanc = orthanc_factory(settings)
    path, dicom = dicom_files[0]
    instance = orthanc.upload(dicom)["ID"]
    info = orthanc.get_json(f"/instances/{instance}/attachments/dicom/info")
    assert info["CompressedSize"] != info["UncompressedSize"]
    assert backend.read(info["Uuid"] + ".dcm") != dicom  # compressed by Orthanc before it reached the plugin

    orthanc.put(f"/instances/{instance}/attachments/myblob", b"custom attachment content")
    blob = orthanc.get_json(f"/instances/{instance}/attachments/myblob/info")
    assert f"{blob['Uuid']}.unk" in backend.keys()

    orthanc.restart()
    assert orthanc.get(f"/instances/{instance}/file") == dicom
    assert orthanc.get(f"/instances/{instance}/attachments/myblob/data") == b"custom attachment content"
    orthanc.delete(f"/instances/{instance}")
    assert backend.keys() == []


# names do not depend on Orthanc's version: every root path on 1.10.1, one on 1.13 (keeps CI lean)
@pytest.mark.parametrize("orthanc_version,root_path", [(HOST_VERSION, ""), (HOST_VERSION, "orthanc/files"),
                                                       (HOST_VERSION, "with-slash/"), (NEWEST_VERSION, "with-slash/")])
def test_root_path_and_legacy_layout(backend, orthanc_factory, dicom_files, root_path):
    for structure in ("flat", "legacy"):
        orthanc = orthanc_factory(backend.settings(RootPath=root_path, StorageStructure=structure),
                                  name=f"orthanc-{structure}")
        path, dicom = dicom_files[1]
        instance = orthanc.upload(dicom)["ID"]
        uuids = attachment_uuids(orthanc, instance)
        if structure == "flat":
            expected = official_names(uuids, root=root_path)
        else:
            prefix = root_path + "/" if root_path and not root_path.endswith("/") else root_path
            expected = sorted(f"{prefix}{u[0:2]}/{u[2:4]}/{u}" for u, _ in uuids)
        assert backend.keys() == expected
        assert orthanc.get(f"/instances/{instance}/file") == dicom
        orthanc.delete(f"/instances/{instance}")
        assert backend.keys() == []
        orthanc.stop()


# header attachments exist only through the v1 API (1.10.1); on 1.13 the header is a range of the DICOM file
@pytest.mark.orthanc_versions(HOST_VERSION)
def test_legacy_unknown_header_files(backend, orthanc_factory, dicom_files):
    """Header attachments written as <uuid>.unk (plugin 1.2.0 with Orthanc 1.9.3) are read and deleted
    under that name with EnableLegacyUnknownFiles, and are missing without it."""
    orthanc = orthanc_factory(backend.settings())
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    header = orthanc.get_json(f"/instances/{instance}/attachments/dicom-until-pixel-data/info")["Uuid"]
    backend.write(f"{header}.unk", backend.read(f"{header}.dcm.head"))
    backend.delete(f"{header}.dcm.head")
    predate_owner_mark(backend)  # written by plugin 1.2.0, before owners were recorded

    orthanc.restart()
    with pytest.raises(HttpError):
        orthanc.get(f"/instances/{instance}/tags")
    orthanc.stop()
    orthanc.config[backend.section]["EnableLegacyUnknownFiles"] = True
    orthanc.start()
    assert orthanc.get_json(f"/instances/{instance}/tags?simplify")["SOPInstanceUID"]
    orthanc.delete(f"/instances/{instance}")
    assert backend.keys() == []


def test_s3_transfer_manager_inside_orthanc(s3_backend, orthanc_factory, dicom_files):
    """UseTransferManager, Tags and StorageClass through Orthanc (tests/providers/test_s3_options.py: on moto)."""
    orthanc = orthanc_factory(s3_backend.settings(UseTransferManager=True, Tags={"origin": "orthanc"},
                                                  StorageClass="STANDARD_IA"))
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    assert orthanc.get(f"/instances/{instance}/file") == dicom_files[0][1]
    uuid = orthanc.get_json(f"/instances/{instance}/attachments/dicom/info")["Uuid"]
    tags = s3_backend.client.get_object_tagging(Bucket=s3_backend.bucket, Key=f"{uuid}.dcm")["TagSet"]
    assert tags == [{"Key": "origin", "Value": "orthanc"}]
