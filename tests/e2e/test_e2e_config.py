"""Start-up through a real Orthanc: invalid configuration stops it with one clear line, secrets never logged."""

import io
import zipfile

import pytest
from support.orthanc import HttpError

pytestmark = pytest.mark.orthanc

SECRET = "test-secret-do-not-log"


@pytest.mark.parametrize("options,expected", [
    ({"HybridMode": "WriteToDisk"}, "{section}.HybridMode: 'WriteToDisk' (string) is invalid; allowed: Disabled, "
                                    "WriteToFileSystem, WriteToObjectStorage"),
    ({"RootPath": "/absolute"}, "{section}.RootPath: '/absolute' is invalid; it must not start with '/'"),
    ({"StorageEncryption": {"MasterKey": [1, "/nonexistent/master.key"]}},
     "{section}.StorageEncryption.MasterKey: cannot read the key file '/nonexistent/master.key'"),
])
def test_invalid_configuration_stops_orthanc(backend, orthanc_factory, options, expected):
    orthanc = orthanc_factory(backend.settings(**options), start=False)
    assert orthanc.start(expect_failure=True) != 0
    log = orthanc.log()
    assert f"orthanc-objstore: invalid configuration: {expected.format(section=backend.section)}" in log
    assert backend.secret is None or backend.secret not in log


@pytest.mark.parametrize("provider", ["s3", "azure"])  # the GCS section holds no secret
def test_an_invalid_secret_is_never_quoted(provider, request, orthanc_factory):
    backend = request.getfixturevalue(f"{provider}_backend")
    option = backend.secret_option
    orthanc = orthanc_factory(backend.settings(**{option: 42}), start=False)
    assert orthanc.start(expect_failure=True) != 0
    log = orthanc.log()
    assert (f"orthanc-objstore: invalid configuration: {backend.section}.{option}: (value hidden) is invalid; "
            "allowed: a JSON string") in log
    assert SECRET not in log and backend.secret not in log


def test_missing_bucket_stops_orthanc(backend, orthanc_factory):
    orthanc = orthanc_factory(backend.missing_container_settings(), start=False)
    assert orthanc.start(expect_failure=True) != 0
    assert "does not exist; create it first" in orthanc.log()


def test_typo_warns_and_no_secret_in_the_log(backend, orthanc_factory, dicom_files):
    typo, meant = backend.typo
    orthanc = orthanc_factory(backend.settings(**{typo: False}))
    orthanc.upload(dicom_files[0][1])
    log = orthanc.log()
    assert f'unknown option "{typo}" is ignored; did you mean "{meant}"?' in log
    assert backend.secret is None or backend.secret not in log


def test_no_section_keeps_orthanc_storage(orthanc_factory, dicom_files, tmp_path):
    orthanc = orthanc_factory({})
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    assert orthanc.get(f"/instances/{instance}/file") == dicom_files[0][1]
    assert "the plugin is disabled and Orthanc keeps its own storage" in orthanc.log()


def test_archive_routes(backend, orthanc_factory, dicom_files):
    orthanc = orthanc_factory(backend.settings())
    instance = orthanc.upload(dicom_files[0][1])["ID"]
    study = orthanc.get_json(f"/instances/{instance}/study")["ID"]
    for method, body in (("GET", None), ("POST", {})):
        status, data = orthanc.request(method, f"/studies/{study}/archive", body)
        archive = zipfile.ZipFile(io.BytesIO(data))
        assert [archive.read(n) for n in archive.namelist() if not n.endswith("/")] == [dicom_files[0][1]]
    media = zipfile.ZipFile(io.BytesIO(orthanc.get(f"/studies/{study}/media")))
    assert "DICOMDIR" in media.namelist()
    job = orthanc.post_json(f"/studies/{study}/archive", {"Asynchronous": True})
    assert job["Path"] == f"/jobs/{job['ID']}"
    with pytest.raises(HttpError) as caught:
        orthanc.get("/studies/0000-unknown/archive")
    assert caught.value.status == 404
    with pytest.raises(HttpError) as caught:
        orthanc.post(f"/studies/{study}/archive", b"not json")
    assert caught.value.status == 400
