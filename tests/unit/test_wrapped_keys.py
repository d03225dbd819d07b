"""Key files wrapped by AWS KMS (``aws-kms:`` + base64 CiphertextBlob): unwrapped through moto's in-process
KMS, and every failure one message naming the file, the service and the cause, never the key."""

import base64
import json
import os

import pytest
from support.servers import free_port, need_module

from orthanc_objstore.config import rules
from orthanc_objstore.config import sections as config
from orthanc_objstore.crypto import wrapped
from orthanc_objstore.errors import ConfigError
from orthanc_objstore.offline import cli


@pytest.fixture
def kms(monkeypatch):
    """moto's KMS in process, reached through boto3's usual chain (environment credentials and region)."""
    moto = need_module("moto")
    for name in ("AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with moto.mock_aws():
        import boto3
        yield boto3.client("kms", region_name="eu-west-1")


def wrapped_file(tmp_path, kms, key: bytes, name="wrapped.key", key_id=None) -> str:
    key_id = key_id or kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=key)["CiphertextBlob"]
    path = tmp_path / name
    path.write_bytes(b"aws-kms:" + base64.b64encode(blob) + b"\n")
    return str(path)


def refused(path) -> str:
    with pytest.raises(ConfigError) as caught:
        rules.load_master_key(path)
    return str(caught.value)


def test_a_wrapped_key_is_unwrapped_and_never_shown(kms, tmp_path):
    key = os.urandom(32)
    path = wrapped_file(tmp_path, kms, key)
    assert rules.load_master_key(path) == key
    loaded = rules.master_key(config.Section("S", {}, [], ()), "MasterKey", [3, path])
    assert (loaded.id, loaded.key, loaded.unwrapped_by) == (3, key, "AWS KMS")
    assert key.hex() not in repr(loaded) and base64.b64encode(key).decode() not in repr(loaded)
    assert repr(loaded) == f"MasterKey(id=3, path={path!r}, unwrapped_by='AWS KMS')"


def test_region_from_aws_region_alone(kms, tmp_path, monkeypatch):
    key = os.urandom(32)
    path = wrapped_file(tmp_path, kms, key)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert rules.load_master_key(path) == key


def test_wrong_ciphertext_names_the_file_and_the_service(kms, tmp_path):
    path = tmp_path / "damaged.key"
    text = b"aws-kms:" + base64.b64encode(os.urandom(150))
    path.write_bytes(text)
    message = refused(str(path))
    assert message.startswith(f"cannot unwrap the key file {str(path)!r}: AWS KMS refused to decrypt: ")
    assert text[8:40].decode() not in message


def test_a_wrapped_key_of_the_wrong_size(kms, tmp_path):
    message = refused(wrapped_file(tmp_path, kms, os.urandom(16)))
    assert "AWS KMS: the unwrapped key holds 16 bytes; a master key is exactly 32 bytes" in message


def test_not_base64_after_the_prefix(tmp_path):
    path = tmp_path / "bad.key"
    path.write_bytes(b"aws-kms:%%%%")
    assert ("AWS KMS: the ciphertext is not valid base64; the key file must read aws-kms:BASE64_CIPHERTEXT_BLOB"
            in refused(str(path)))


def test_no_region(kms, tmp_path, monkeypatch):
    path = wrapped_file(tmp_path, kms, os.urandom(32))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert "AWS KMS: no region (set AWS_REGION or AWS_DEFAULT_REGION" in refused(path)


def test_kms_unreachable(tmp_path, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    path = tmp_path / "k.key"
    path.write_bytes(b"aws-kms:" + base64.b64encode(os.urandom(100)))
    message = refused(str(path))
    assert message == (f"cannot unwrap the key file {str(path)!r}: AWS KMS is unreachable at "
                       f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize("code, reason", [("DisabledException", "the KMS key is disabled"),
                                          ("AccessDeniedException", "these credentials may not use the KMS key: kms:Decrypt is needed"),
                                          ("KMSInvalidStateException", "the KMS key is pending deletion or not usable")])
def test_refusals_of_the_service_say_why(tmp_path, monkeypatch, code, reason):
    """moto's KMS decrypts with a disabled key; these answers are played by botocore's Stubber."""
    import boto3
    from botocore.stub import Stubber
    client = boto3.client("kms", region_name="eu-west-1", aws_access_key_id="t", aws_secret_access_key="t")
    stubber = Stubber(client)
    stubber.add_client_error("decrypt", service_error_code=code, service_message="the service's text", http_status_code=400)
    stubber.activate()
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: client)
    path = tmp_path / "k.key"
    path.write_bytes(b"aws-kms:" + base64.b64encode(os.urandom(100)))
    message = refused(str(path))
    assert message == f"cannot unwrap the key file {str(path)!r}: AWS KMS refused to decrypt: {code} ({reason})"


def test_check_config_says_which_keys_were_unwrapped(kms, tmp_path, capsys):
    current, previous = wrapped_file(tmp_path, kms, os.urandom(32)), wrapped_file(tmp_path, kms, os.urandom(32), "old.key")
    plain = tmp_path / "plain.key"
    plain.write_bytes(base64.b64encode(os.urandom(32)))
    configuration = tmp_path / "orthanc.json"
    configuration.write_text(json.dumps({"Plugins": ["libOrthancPython.so"], "AwsS3Storage": {
        "BucketName": "b", "Region": "eu-west-1", "StorageEncryption": {
            "MasterKey": [2, current], "PreviousMasterKeys": [[1, previous], [0, str(plain)]]}}}))
    assert cli.main(["check-config", str(configuration)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"ok: MasterKey (id 2) {current!r}: unwrapped through AWS KMS",
                   f"ok: PreviousMasterKeys[0] (id 1) {previous!r}: unwrapped through AWS KMS",
                   "ok: AwsS3Storage, flat layout, hybrid mode Disabled, encryption on, read cache 256 MB in memory, "
                   "prefetch on"]


def test_check_config_fails_when_it_cannot_unwrap(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")  # credentials found: the cause is the endpoint, in any order
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    path = tmp_path / "k.key"
    path.write_bytes(b"aws-kms:" + base64.b64encode(os.urandom(100)))
    configuration = tmp_path / "orthanc.json"
    configuration.write_text(json.dumps({"AwsS3Storage": {"BucketName": "b", "Region": "eu-west-1",
                                                          "StorageEncryption": {"MasterKey": [2, str(path)]}}}))
    assert cli.main(["check-config", str(configuration)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: AwsS3Storage.StorageEncryption.MasterKey: cannot unwrap the key file {str(path)!r}: "
                          "AWS KMS is unreachable at")


def test_only_known_prefixes_are_wrapped_keys():
    assert wrapped.wrapping(b"  aws-kms:AAAA\n") == "aws-kms:"
    assert wrapped.wrapping(b"azure-keyvault:https://v.vault.azure.net/keys/k/1 AAAA") == "azure-keyvault:"
    assert wrapped.wrapping(b"gcp-kms:projects/p/locations/l/keyRings/r/cryptoKeys/k AAAA") == "gcp-kms:"
    assert wrapped.wrapping(base64.b64encode(os.urandom(32))) is None
