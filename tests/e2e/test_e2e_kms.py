"""End to end (Orthanc 1.10.1 and 1.13): master keys wrapped by AWS KMS (moto's KMS), unwrapped at start-up;
a KMS that refuses stops Orthanc with one line; S3 reached with EKS-style web identity (moto's STS)."""

import base64
import os
import struct
import subprocess

import pytest
from support.attachments import attachment_uuids
from support.official_a1 import official_decrypt
from support.orthanc import HOST_VERSION
from support.servers import FaultProxy, free_port, require, venv_bin

pytestmark = pytest.mark.orthanc


def kms_client(moto):
    import boto3
    return boto3.client("kms", endpoint_url=moto.url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def kms_environment(moto) -> dict:
    return {"AWS_ENDPOINT_URL_KMS": moto.url, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "kms-user", "AWS_SECRET_ACCESS_KEY": "kms-secret"}


def write_wrapped_key(orthanc, moto, name) -> tuple[str, bytes]:
    """A new 32-byte key, encrypted by a new KMS key as 'aws kms encrypt' does; the file holds only the ciphertext."""
    kms = kms_client(moto)
    key = os.urandom(32)
    blob = kms.encrypt(KeyId=kms.create_key()["KeyMetadata"]["KeyId"], Plaintext=key)["CiphertextBlob"]
    return orthanc.write_file(name, b"aws-kms:" + base64.b64encode(blob) + b"\n"), key


def dicom_uuid(orthanc, instance):
    return next(uuid for uuid, kind in attachment_uuids(orthanc, instance) if kind == 1)


def assert_never_shown(text, *keys):
    for key in keys:
        assert base64.b64encode(key).decode() not in text and key.hex() not in text


def test_wrapped_master_keys_encrypt_as_plain_ones(s3_backend, orthanc_factory, dicom_files):
    moto = s3_backend.moto
    orthanc = orthanc_factory({}, start=False, env=kms_environment(moto))
    path_1, key_1 = write_wrapped_key(orthanc, moto, "kms-1.key")
    orthanc.config.update(s3_backend.settings(StorageEncryption={"MasterKey": [1, path_1]}))
    orthanc.start()
    _, dicom = dicom_files[0]
    instance = orthanc.upload(dicom)["ID"]
    stored = s3_backend.read(f"{dicom_uuid(orthanc, instance)}.dcm.enc")
    assert stored[:6] == b"A1" + struct.pack("<I", 1)
    assert official_decrypt(stored, key_1) == dicom  # the official plugin reads it, given the unwrapped key
    assert orthanc.get(f"/instances/{instance}/file") == dicom

    # rotation: a new wrapped key, the first one kept (wrapped) to read with
    path_2, key_2 = write_wrapped_key(orthanc, moto, "kms-2.key")
    orthanc.config[s3_backend.section]["StorageEncryption"] = {"MasterKey": [2, path_2],
                                                               "PreviousMasterKeys": [[1, path_1]],
                                                               "Format": "A2"}
    orthanc.restart()
    assert orthanc.get(f"/instances/{instance}/file") == dicom
    _, second = dicom_files[1]
    new_instance = orthanc.upload(second)["ID"]
    assert s3_backend.read(f"{dicom_uuid(orthanc, new_instance)}.dcm.enc")[:6] == b"A2" + struct.pack("<I", 2)
    assert orthanc.get(f"/instances/{new_instance}/file") == second
    log = orthanc.log()
    assert f"master key id 2 from {path_2!r} unwrapped through AWS KMS" in log
    assert f"master key id 1 from {path_1!r} unwrapped through AWS KMS" in log
    assert_never_shown(log + orthanc.get("/plugins/python").decode(errors="replace"), key_1, key_2)


@pytest.mark.parametrize("case", ["damaged", "unreachable", "no-region"])
def test_a_kms_that_cannot_unwrap_stops_start_up_with_one_line(s3_backend, orthanc_factory, case):
    moto = s3_backend.moto
    environment = kms_environment(moto)
    orthanc = orthanc_factory({}, start=False, env=environment)
    path, key = write_wrapped_key(orthanc, moto, "kms.key")
    if case == "damaged":
        text = b"aws-kms:" + base64.b64encode(os.urandom(120))
        orthanc.write_file("kms.key", text)
        cause = "AWS KMS refused to decrypt: "
    elif case == "unreachable":
        environment["AWS_ENDPOINT_URL_KMS"] = f"http://127.0.0.1:{free_port()}"
        cause = f"AWS KMS is unreachable at {environment['AWS_ENDPOINT_URL_KMS']}/"
    else:
        del environment["AWS_DEFAULT_REGION"]
        environment["AWS_CONFIG_FILE"] = os.path.join(orthanc.orthanc_workdir, "no-aws-config")
        cause = "AWS KMS: no region"
    orthanc.env = environment
    orthanc.config.update(s3_backend.settings(StorageEncryption={"MasterKey": [1, path]}))
    assert orthanc.start(expect_failure=True) != 0
    log = orthanc.log()
    lines = [line for line in log.splitlines() if "cannot unwrap the key file" in line]
    assert len(lines) == 1 and f"StorageEncryption.MasterKey: cannot unwrap the key file {path!r}: {cause}" in lines[0]
    assert_never_shown(log, key)
    assert s3_backend.keys() == []


@pytest.mark.orthanc_versions(HOST_VERSION)
def test_the_tools_unwrap_too(s3_backend, orthanc_factory, dicom_files, tmp_path):
    """check-config says it could unwrap; verify --deep and re-encrypt read with the wrapped keys."""
    import json
    moto = s3_backend.moto
    environment = kms_environment(moto)
    orthanc = orthanc_factory({}, start=False, env=environment)
    path_1, key_1 = write_wrapped_key(orthanc, moto, "kms-1.key")
    settings = s3_backend.settings(StorageEncryption={"MasterKey": [1, path_1]})
    orthanc.config.update(settings)
    orthanc.start()
    instances = [orthanc.upload(dicom)["ID"] for _, dicom in dicom_files[:2]]
    orthanc.stop()
    command = venv_bin("orthanc-objstore")
    require(command is not None, "the orthanc-objstore command is not installed in this venv (pip install .)")

    def tool(*arguments, config):
        path = tmp_path / "tool.json"
        path.write_text(json.dumps(config))
        return subprocess.run([command, *arguments, str(path)] if arguments[0] == "check-config"
                              else [command, *arguments, "--config", str(path)], capture_output=True, text=True,
                              timeout=300, env={**os.environ, **environment})

    checked = tool("check-config", config=orthanc.config)
    assert checked.returncode == 0, checked.stderr
    assert f"ok: MasterKey (id 1) {path_1!r}: unwrapped through AWS KMS" in checked.stdout
    verified = tool("verify", "--deep", config=orthanc.config)
    assert verified.returncode == 0 and f"{2 * len(instances)} ok" in verified.stdout, verified.stdout + verified.stderr

    path_2, key_2 = write_wrapped_key(orthanc, moto, "kms-2.key")
    rotated = {**orthanc.config, s3_backend.section: {**orthanc.config[s3_backend.section], "StorageEncryption": {
        "MasterKey": [2, path_2], "PreviousMasterKeys": [[1, path_1]]}}}
    rewritten = tool("re-encrypt", config=rotated)
    assert rewritten.returncode == 0 and f"{2 * len(instances)} re-encrypted" in rewritten.stdout, rewritten.stdout
    assert {s3_backend.read(name)[:6] for name in s3_backend.keys()} == {b"A1" + struct.pack("<I", 2)}
    environment["AWS_ENDPOINT_URL_KMS"] = f"http://127.0.0.1:{free_port()}"
    refused = tool("verify", config=rotated)
    assert refused.returncode != 0 and f"cannot unwrap the key file {path_2!r}: AWS KMS is unreachable" in refused.stderr
    for result in (checked, verified, rewritten, refused):
        assert_never_shown(result.stdout + result.stderr, key_1, key_2)


def test_s3_with_web_identity_and_no_secret(s3_backend, orthanc_factory, dicom_files):
    """EKS's IRSA: a token file and a role, no access key anywhere; boto3's chain asks STS (moto's) for
    credentials. STS is reached through a proxy that counts its requests: the chain did use it."""
    sts = FaultProxy(s3_backend.moto.port)
    try:
        orthanc = orthanc_factory({}, start=False)
        token = orthanc.write_file("token", b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl")
        orthanc.env = {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/orthanc", "AWS_WEB_IDENTITY_TOKEN_FILE": token,
                       "AWS_ROLE_SESSION_NAME": "orthanc-objstore", "AWS_ENDPOINT_URL_STS": sts.url,
                       "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_CONFIG_FILE": os.path.join(orthanc.orthanc_workdir, "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": os.path.join(orthanc.orthanc_workdir, "none")}
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            assert name not in os.environ
        settings = s3_backend.settings()
        del settings[s3_backend.section]["AccessKey"], settings[s3_backend.section]["SecretKey"]
        orthanc.config.update(settings)
        orthanc.start()
        _, dicom = dicom_files[0]
        instance = orthanc.upload(dicom)["ID"]
        assert orthanc.get(f"/instances/{instance}/file") == dicom
        assert f"{dicom_uuid(orthanc, instance)}.dcm" in s3_backend.keys()
        assert sts.requests, "the credential chain never asked STS"
    finally:
        sts.close()
