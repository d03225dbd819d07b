"""StorageEncryption options and key files (SPEC ENC-1, CFG-3/5) and the keygen command."""

import base64
import os
import stat

import pytest

from orthanc_objstore.config import sections as config
from orthanc_objstore.config.rules import load_master_key
from orthanc_objstore.errors import ConfigError
from orthanc_objstore.offline import cli


@pytest.fixture
def key_file(tmp_path):
    def make(name, content):
        path = tmp_path / name
        path.write_bytes(content)
        return str(path)
    return make


def parse_encryption(encryption: dict):
    parsed, warnings = config.parse({"AwsS3Storage": {"BucketName": "b", "Region": "eu-west-1",
                                                      "StorageEncryption": encryption}})
    return parsed.common.encryption, warnings


def problems_of(encryption: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_encryption(encryption)
    return "\n".join(caught.value.problems)


def test_a_complete_section(key_file):
    current = key_file("new.key", base64.b64encode(os.urandom(32)) + b"\n")
    old = key_file("old.key", base64.b64encode(os.urandom(32)))
    encryption, warnings = parse_encryption({"MasterKey": [2, current], "PreviousMasterKeys": [[1, old]],
                                             "MaxConcurrentInputSize": 5000, "Format": "A2"})
    assert (encryption.master_key.id, encryption.master_key.path) == (2, current)
    assert [key.id for key in encryption.previous_master_keys] == [1]
    assert encryption.max_concurrent_input_size_mb == 5000 and encryption.format == "A2"
    assert warnings == []


def test_defaults_and_disabling(key_file):
    current = key_file("k.key", base64.b64encode(os.urandom(32)))
    encryption, _ = parse_encryption({"MasterKey": [1, current]})
    assert (encryption.format, encryption.max_concurrent_input_size_mb, encryption.previous_master_keys) == \
        ("A1", 1024, ())
    assert parse_encryption({"Enable": False})[0] is None


@pytest.mark.parametrize("content, expected", [
    (base64.b64encode(os.urandom(16)), "holds 16 bytes"),
    (base64.b64encode(os.urandom(33)), "holds 33 bytes"),
    (b"", "holds 0 bytes"),
    (b"not base64 at all!", "not valid base64"),
    (os.urandom(32).hex().encode(), "holds 48 bytes"),  # the pre-2.0 hex form of the official plugin
])
def test_bad_key_files_name_the_file_never_the_key(key_file, content, expected):
    path = key_file("bad.key", content)
    message = problems_of({"MasterKey": [1, path]})
    assert path in message and expected in message and "MasterKey" in message
    if content:
        assert content.decode(errors="replace") not in message


def test_unreadable_and_missing_key_files(key_file, tmp_path):
    message = problems_of({"MasterKey": [1, str(tmp_path / "missing.key")]})
    assert "missing.key" in message and "cannot read the key file" in message
    good = key_file("good.key", base64.b64encode(os.urandom(32)))
    message = problems_of({"MasterKey": [1, good], "PreviousMasterKeys": [[0, str(tmp_path / "gone.key")]]})
    assert "PreviousMasterKeys[0]" in message and "gone.key" in message


@pytest.mark.parametrize("section, expected", [
    ({}, "MasterKey: missing; encryption is enabled"),
    ({"MasterKey": "key.key"}, "allowed: [id, \"/path/to/key\"]"),
    ({"MasterKey": [-1, "k"]}, "allowed: [id"),
    ({"MasterKey": [2 ** 32, "k"]}, "allowed: [id"),
    ({"Enable": "yes"}, "Enable"),
    ({"Format": "A4", "Enable": False}, "Format: 'A4' (string) is invalid; allowed: A1, A2, A3"),
    ({"MaxConcurrentInputSize": 0, "Enable": False}, "MaxConcurrentInputSize"),
    ({"PreviousMasterKeys": {"1": "k"}, "MasterKey": [1, "k"]}, "PreviousMasterKeys"),
])
def test_configured_but_unusable_encryption_stops_start_up(section, expected):
    assert expected in problems_of(section)


def test_one_id_for_two_keys_is_refused(key_file):
    first = key_file("first.key", base64.b64encode(os.urandom(32)))
    second = key_file("second.key", base64.b64encode(os.urandom(32)))
    message = problems_of({"MasterKey": [1, first], "PreviousMasterKeys": [[1, second]]})
    assert "id 1 is already used by MasterKey" in message and "second.key" in message
    message = problems_of({"MasterKey": [3, first], "PreviousMasterKeys": [[1, first], [1, second]]})
    assert "PreviousMasterKeys[1]: id 1 is already used by PreviousMasterKeys[0]" in message
    encryption, _ = parse_encryption({"MasterKey": [1, first], "PreviousMasterKeys": [[1, first]]})
    assert encryption.master_key.id == 1


def test_unknown_options_inside_storage_encryption_are_warned(key_file):
    current = key_file("k.key", base64.b64encode(os.urandom(32)))
    _, warnings = parse_encryption({"MasterKey": [1, current], "PreviousMasterKey": [[0, current]]})
    assert any('StorageEncryption: unknown option "PreviousMasterKey"' in w and "PreviousMasterKeys" in w
               for w in warnings)


def test_keygen_writes_a_private_key_file_that_config_accepts(tmp_path, capsys):
    path = str(tmp_path / "master.key")
    assert cli.main(["keygen", path]) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = load_master_key(path)
    assert len(key) == 32
    assert base64.b64encode(key).decode() not in capsys.readouterr().out
    with open(path, "rb") as file:
        before = file.read()
    assert cli.main(["keygen", path]) == 1
    assert "already exists" in capsys.readouterr().err
    with open(path, "rb") as file:
        assert file.read() == before
    other = str(tmp_path / "other.key")
    cli.main(["keygen", other])
    assert load_master_key(other) != key


def test_keygen_into_a_missing_folder_fails_cleanly(tmp_path, capsys):
    assert cli.main(["keygen", str(tmp_path / "no" / "such" / "dir.key")]) == 1
    assert "cannot create the key file" in capsys.readouterr().err
