"""Key files wrapped by Azure Key Vault (``azure-keyvault:``) and Google Cloud KMS (``gcp-kms:``), through the real
SDKs against the fakes of support.key_services (no emulator exists for either): unwrapping, and each failure one
message naming the file, the service and the cause, never the key."""

import base64
import os

import pytest
from support.azure_identity import FOREIGN_VARIABLES, FakeIdentityEndpoint
from support.key_services import KEY_ID, KMS_KEY, VAULT, FakeCloudKms, FakeKeyVault, FakeToken
from support.key_services import damaged as damaged_text
from support.servers import free_port, need_module

from orthanc_objstore.config import rules
from orthanc_objstore.config import sections as config
from orthanc_objstore.crypto import wrapped
from orthanc_objstore.errors import ConfigError


@pytest.fixture
def vault(monkeypatch):
    need_module("azure.keyvault.keys")
    fake = FakeKeyVault()
    monkeypatch.setitem(wrapped.SDK_OPTIONS, wrapped.AZURE_KEY_VAULT, {"credential": FakeToken(),
                                                                       "transport": fake.transport()})
    return fake


@pytest.fixture
def cloud_kms(monkeypatch):
    need_module("google.cloud.kms")
    fake = FakeCloudKms()
    monkeypatch.setitem(wrapped.SDK_OPTIONS, wrapped.GCP_KMS, fake.sdk_options())
    yield fake
    fake.close()


def key_file(tmp_path, text: bytes, name="wrapped.key") -> str:
    path = tmp_path / name
    path.write_bytes(text)
    return str(path)


def refused(path) -> str:
    with pytest.raises(ConfigError) as caught:
        rules.load_master_key(path)
    return str(caught.value)


def assert_never_shown(text, key):
    assert base64.b64encode(key).decode() not in text and key.hex() not in text


@pytest.mark.parametrize("algorithm", [None, "RSA-OAEP"])
def test_a_key_vault_key_is_unwrapped_and_never_shown(vault, tmp_path, algorithm):
    key = os.urandom(32)
    path = key_file(tmp_path, vault.wrapped_file_text(key, algorithm))
    loaded = rules.master_key(config.Section("S", {}, [], ()), "MasterKey", [4, path])
    assert (loaded.id, loaded.key, loaded.unwrapped_by) == (4, key, "Azure Key Vault")
    assert repr(loaded) == f"MasterKey(id=4, path={path!r}, unwrapped_by='Azure Key Vault')"
    assert ("POST", f"{KEY_ID[len(VAULT):]}/unwrapkey") in vault.operations


def test_a_key_vault_result_in_base64url_is_read_too(vault, tmp_path):
    """The Azure CLI and the REST API answer base64url (no padding, - and _)."""
    for _ in range(200):  # a ciphertext whose base64url differs from its base64 (holds - or _)
        key = os.urandom(32)
        head, blob = vault.wrapped_file_text(key).rsplit(b" ", 1)
        url_safe = base64.urlsafe_b64encode(base64.b64decode(blob)).rstrip(b"=")
        if b"-" in url_safe or b"_" in url_safe:
            break
    assert b"-" in url_safe or b"_" in url_safe
    assert rules.load_master_key(key_file(tmp_path, head + b" " + url_safe)) == key


def test_key_vault_failures_say_why(vault, tmp_path):
    key = os.urandom(32)
    path = key_file(tmp_path, vault.wrapped_file_text(key))
    vault.state = "disabled"
    message = refused(path)
    assert message == (f"cannot unwrap the key file {path!r}: Azure Key Vault refused to unwrap: "
                       "Forbidden/KeyDisabled (the key is disabled)")
    vault.state = "enabled"
    damaged = key_file(tmp_path, damaged_text(vault.wrapped_file_text(key)), "damaged.key")
    assert refused(damaged).endswith("Azure Key Vault refused to unwrap: BadParameter (the wrapped key is damaged, "
                                     "was wrapped by another key, or with another algorithm)")
    vault.state = "unreachable"
    assert refused(path).endswith(f"Azure Key Vault is unreachable at {VAULT}")
    other_key = key_file(tmp_path, vault.wrapped_file_text(key).replace(b"orthanc-master", b"other"), "k3.key")
    vault.state = "enabled"
    assert "refused to unwrap: KeyNotFound (no such key or version in the vault)" in refused(other_key)


@pytest.mark.parametrize("text,expected", [
    (b"azure-keyvault:AAAA", "Azure Key Vault: the key file must read azure-keyvault:KEY_IDENTIFIER"),
    (f"azure-keyvault:{KEY_ID} ROT13 AAAA".encode(), "Azure Key Vault: unknown wrapping algorithm 'ROT13'"),
    (f"azure-keyvault:{KEY_ID} %%%%".encode(), "Azure Key Vault: the ciphertext is not valid base64"),
    (b"gcp-kms:AAAA", "Google Cloud KMS: the key file must read gcp-kms:projects/P/locations/L/keyRings/R/"),
    (b"gcp-kms:keys/k AAAA", "Google Cloud KMS: 'keys/k' is not a key name"),
    (f"gcp-kms:{KMS_KEY} %%%%".encode(), "Google Cloud KMS: the ciphertext is not valid base64"),
])
def test_malformed_key_files_say_what_is_expected(tmp_path, text, expected):
    need_module("azure.keyvault.keys")
    need_module("google.cloud.kms")
    assert expected in refused(key_file(tmp_path, text))


def test_key_vault_without_an_identity_gives_the_chains_reason(vault, tmp_path, monkeypatch):
    """The real DefaultAzureCredential, whose only identity (a fake managed-identity endpoint) refuses."""
    need_module("azure.identity")
    for name in FOREIGN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "no-azure-cli"))
    endpoint = FakeIdentityEndpoint()
    endpoint.refuse = True
    try:
        for name, value in endpoint.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setitem(wrapped.SDK_OPTIONS, wrapped.AZURE_KEY_VAULT, {"transport": vault.transport()})
        message = refused(key_file(tmp_path, vault.wrapped_file_text(os.urandom(32))))
    finally:
        endpoint.close()
    assert "Azure Key Vault: no Azure identity: DefaultAzureCredential found no token (" in message
    assert "ManagedIdentityCredential:" in message and "\n" not in message
    assert endpoint.requests and set(endpoint.requests) == {"https://vault.azure.net"}  # the vault's challenge scope


def test_a_cloud_kms_key_is_unwrapped_and_never_shown(cloud_kms, tmp_path):
    key = os.urandom(32)
    path = key_file(tmp_path, cloud_kms.wrapped_file_text(key))
    key_read, service = rules.read_master_key(path)
    assert (key_read, service) == (key, "Google Cloud KMS")
    assert cloud_kms.requests == [f"/v1/{KMS_KEY}:decrypt"]


def test_cloud_kms_failures_say_why(cloud_kms, tmp_path, monkeypatch):
    key = os.urandom(32)
    path = key_file(tmp_path, cloud_kms.wrapped_file_text(key))
    cloud_kms.state = "disabled"
    assert refused(path) == (f"cannot unwrap the key file {path!r}: Google Cloud KMS refused to decrypt: "
                             "FAILED_PRECONDITION (the key version is disabled, destroyed or not usable)")
    cloud_kms.state = "enabled"
    damaged = key_file(tmp_path, damaged_text(cloud_kms.wrapped_file_text(key)), "d.key")
    assert refused(damaged).endswith("Google Cloud KMS refused to decrypt: INVALID_ARGUMENT (the ciphertext is "
                                     "damaged or was not produced by this key)")
    other = key_file(tmp_path, cloud_kms.wrapped_file_text(key, KMS_KEY.replace("master", "other")), "o.key")
    assert refused(other).endswith("NOT_FOUND (no such key in this project, location and key ring)")
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setitem(wrapped.SDK_OPTIONS, wrapped.GCP_KMS, cloud_kms.sdk_options(closed))
    message = refused(path)
    assert f"Google Cloud KMS is unreachable at {closed}" in message
    for text in (message, refused(damaged)):
        assert_never_shown(text, key)


def test_check_config_says_which_service_unwrapped(vault, cloud_kms, tmp_path, capsys):
    import json

    from orthanc_objstore.offline import cli
    first = key_file(tmp_path, vault.wrapped_file_text(os.urandom(32)), "vault.key")
    second = key_file(tmp_path, cloud_kms.wrapped_file_text(os.urandom(32)), "gcp.key")
    configuration = tmp_path / "orthanc.json"
    configuration.write_text(json.dumps({"AwsS3Storage": {"BucketName": "b", "Region": "eu-west-1",
                                                          "StorageEncryption": {"MasterKey": [2, first],
                                                                                "PreviousMasterKeys": [[1, second]]}}}))
    assert cli.main(["check-config", str(configuration)]) == 0
    out = capsys.readouterr().out
    assert f"ok: MasterKey (id 2) {first!r}: unwrapped through Azure Key Vault" in out
    assert f"ok: PreviousMasterKeys[0] (id 1) {second!r}: unwrapped through Google Cloud KMS" in out
