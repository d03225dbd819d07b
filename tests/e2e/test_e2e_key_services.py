"""End to end (Orthanc 1.10.1 and 1.13): master keys wrapped by Azure Key Vault and by Google Cloud KMS, unwrapped
at start-up by the plugin inside Orthanc. No emulator exists for either: the fakes of support.key_services answer
behind an HTTPS proxy on 127.0.0.1 (Orthanc's HTTPS_PROXY), under a certificate for the services' real host
names. Key Vault's token comes from the fake managed-identity endpoint of support.azure_identity; Cloud KMS's
credentials are a service-account file made for the test (application-default credentials)."""

import base64
import os
import struct

import pytest
from support.attachments import attachment_uuids
from support.azure_identity import (
    FOREIGN_VARIABLES,
    FakeIdentityEndpoint,
    identity_environment,
    self_signed_certificate,
)
from support.key_services import (
    GOOGLE_KMS_HOST,
    GOOGLE_TOKEN_HOST,
    KMS_KEY,
    VAULT_HOST,
    FakeCloudKms,
    FakeKeyVault,
    ServicesBehindProxy,
    google_token,
    service_account_file_text,
)
from support.official_a1 import official_decrypt
from support.servers import need_module

pytestmark = pytest.mark.orthanc


@pytest.fixture
def key_vault(tmp_path, monkeypatch):
    """(the fake vault, its proxy, the identity endpoint, the CA's PEM bytes)."""
    need_module("azure.keyvault.keys")
    for name in FOREIGN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    certificate, key = self_signed_certificate(VAULT_HOST)
    (tmp_path / "vault.crt").write_bytes(certificate)
    (tmp_path / "vault.key").write_bytes(key)
    vault = FakeKeyVault()
    proxy = ServicesBehindProxy({VAULT_HOST: vault.answer}, str(tmp_path / "vault.crt"), str(tmp_path / "vault.key"))
    endpoint = FakeIdentityEndpoint()
    yield vault, proxy, endpoint, certificate
    endpoint.close()
    proxy.close()


def orthanc_with_a_vault_key(orthanc_factory, s3_backend, key_vault, key: bytes):
    vault, proxy, endpoint, certificate = key_vault
    orthanc = orthanc_factory({}, start=False)
    ca_file = orthanc.write_file("vault-ca.crt", certificate)
    orthanc.env = {**orthanc.env, **identity_environment(endpoint, ca_file), **proxy.environment(ca_file)}
    path = orthanc.write_file("master.akv", vault.wrapped_file_text(key))
    orthanc.config.update(s3_backend.settings(StorageEncryption={"MasterKey": [5, path]}))
    return orthanc, path


def assert_never_shown(text, key):
    assert base64.b64encode(key).decode() not in text and key.hex() not in text


def test_a_key_vault_key_encrypts_inside_orthanc(s3_backend, orthanc_factory, key_vault, dicom_files):
    vault, proxy, endpoint, _ = key_vault
    key = os.urandom(32)
    orthanc, path = orthanc_with_a_vault_key(orthanc_factory, s3_backend, key_vault, key)
    orthanc.start()
    _, dicom = dicom_files[0]
    instance = orthanc.upload(dicom)["ID"]
    uuid = next(uuid for uuid, kind in attachment_uuids(orthanc, instance) if kind == 1)
    stored = s3_backend.read(f"{uuid}.dcm.enc")
    assert stored[:6] == b"A1" + struct.pack("<I", 5) and official_decrypt(stored, key) == dicom
    assert orthanc.get(f"/instances/{instance}/file") == dicom
    assert proxy.connects and set(proxy.connects) == {f"{VAULT_HOST}:443"}
    assert any(path.endswith("/unwrapkey") for method, path in vault.operations if method == "POST")
    assert set(endpoint.requests) == {"https://vault.azure.net"}
    log = orthanc.log()
    assert f"master key id 5 from {path!r} unwrapped through Azure Key Vault" in log
    assert_never_shown(log + orthanc.get("/plugins/python").decode(errors="replace"), key)


@pytest.mark.parametrize("case", ["disabled", "no-identity"])
def test_a_vault_that_cannot_unwrap_stops_start_up_with_one_line(s3_backend, orthanc_factory, key_vault, case):
    vault, _, endpoint, _ = key_vault
    key = os.urandom(32)
    orthanc, path = orthanc_with_a_vault_key(orthanc_factory, s3_backend, key_vault, key)
    if case == "disabled":
        vault.state = "disabled"
        cause = "Azure Key Vault refused to unwrap: Forbidden/KeyDisabled (the key is disabled)"
    else:
        endpoint.refuse = True
        cause = "Azure Key Vault: no Azure identity: DefaultAzureCredential found no token ("
    assert orthanc.start(expect_failure=True) != 0
    log = orthanc.log()
    lines = [line for line in log.splitlines() if "cannot unwrap the key file" in line]
    assert len(lines) == 1 and f"StorageEncryption.MasterKey: cannot unwrap the key file {path!r}: {cause}" in lines[0]
    assert_never_shown(log, key)
    assert s3_backend.keys() == []


@pytest.fixture
def cloud_kms(tmp_path):
    """(the fake Cloud KMS, its proxy, the CA's PEM bytes)."""
    need_module("google.cloud.kms")
    certificate, key = self_signed_certificate(GOOGLE_KMS_HOST, GOOGLE_TOKEN_HOST)
    (tmp_path / "google.crt").write_bytes(certificate)
    (tmp_path / "google.key").write_bytes(key)
    kms = FakeCloudKms()
    proxy = ServicesBehindProxy({GOOGLE_KMS_HOST: kms.answer_request, GOOGLE_TOKEN_HOST: google_token},
                                str(tmp_path / "google.crt"), str(tmp_path / "google.key"))
    yield kms, proxy, certificate
    proxy.close()
    kms.close()


@pytest.mark.parametrize("case", ["unwrapped", "disabled"])
def test_a_cloud_kms_key_inside_orthanc(s3_backend, orthanc_factory, cloud_kms, dicom_files, case):
    kms, proxy, certificate = cloud_kms
    key = os.urandom(32)
    orthanc = orthanc_factory({}, start=False)
    ca_file = orthanc.write_file("google-ca.crt", certificate)
    account = orthanc.write_file("service-account.json", service_account_file_text())
    orthanc.env = {**orthanc.env, **proxy.environment(ca_file), "GOOGLE_APPLICATION_CREDENTIALS": account,
                   "GCE_METADATA_HOST": "127.0.0.1:9"}
    path = orthanc.write_file("master.gkms", kms.wrapped_file_text(key))
    orthanc.config.update(s3_backend.settings(StorageEncryption={"MasterKey": [6, path], "Format": "A2"}))
    if case == "disabled":
        kms.state = "disabled"
        assert orthanc.start(expect_failure=True) != 0
        lines = [line for line in orthanc.log().splitlines() if "cannot unwrap the key file" in line]
        assert len(lines) == 1 and (f"cannot unwrap the key file {path!r}: Google Cloud KMS refused to decrypt: "
                                    "FAILED_PRECONDITION (the key version is disabled") in lines[0]
        assert s3_backend.keys() == []
    else:
        orthanc.start()
        _, dicom = dicom_files[1]
        instance = orthanc.upload(dicom)["ID"]
        uuid = next(uuid for uuid, kind in attachment_uuids(orthanc, instance) if kind == 1)
        assert s3_backend.read(f"{uuid}.dcm.enc")[:6] == b"A2" + struct.pack("<I", 6)
        assert orthanc.get(f"/instances/{instance}/file") == dicom
        assert kms.requests == [f"/v1/{KMS_KEY}:decrypt"]
        assert f"{GOOGLE_KMS_HOST}:443" in proxy.connects
        assert f"master key id 6 from {path!r} unwrapped through Google Cloud KMS" in orthanc.log()
    assert_never_shown(orthanc.log(), key)
