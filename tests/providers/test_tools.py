"""The offline tools on a hand-built Orthanc SQLite index and StorageDirectory, against moto: migrate, verify, re-encrypt."""

import base64
import os
import struct

from support.orthanc_files import OrthancFolder

from orthanc_objstore.offline import cli
from orthanc_objstore.offline.index import read_sqlite_index


def run(*argv, capsys):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def write_key(folder, name):
    path = os.path.join(folder, name)
    with open(path, "wb") as file:
        file.write(base64.b64encode(os.urandom(32)))
    return path


def test_migrate_resumes_verify_names_problems(tmp_path, s3_backend, capsys):
    orthanc = OrthancFolder(str(tmp_path), compressed=True)
    config = orthanc.config(s3_backend)

    status, out, _ = run("migrate", "--config", config, "--dry-run", capsys=capsys)
    assert status == 0 and f"{len(orthanc.files)} to copy" in out and s3_backend.keys() == []

    status, out, err = run("migrate", "--config", config, "--workers", "4", capsys=capsys)
    assert status == 0, out + err
    assert f"{len(orthanc.files)} copied" in out and "migrate: " in err
    assert s3_backend.keys() == orthanc.names()
    for name in s3_backend.keys():  # copied as stored (compressed)
        assert s3_backend.read(name) == orthanc.files[name[:36]][1]
    dicom_uuid = next(uuid for uuid, (kind, _) in orthanc.files.items() if kind == 1)
    assert all(os.path.exists(orthanc.path(uuid)) for uuid in orthanc.files)  # sources kept

    status, out, _ = run("migrate", "--config", config, capsys=capsys)  # resumable: nothing copied again
    assert status == 0 and f"{len(orthanc.files)} skipped" in out and "copied" not in out
    s3_backend.write(dicom_uuid + ".dcm", b"cut short by an interrupted copy")
    status, out, _ = run("migrate", "--config", config, capsys=capsys)  # a wrong-sized copy is replaced
    assert status == 0 and "1 copied" in out and f"{len(orthanc.files) - 1} skipped" in out
    assert s3_backend.read(dicom_uuid + ".dcm") == orthanc.files[dicom_uuid][1]

    assert run("verify", "--config", config, "--deep", capsys=capsys)[0] == 0
    s3_backend.delete(dicom_uuid + ".dcm")
    s3_backend.write(next(name for name in orthanc.names() if name.endswith(".head")), b"short")
    status, out, _ = run("verify", "--config", config, capsys=capsys)
    problems = [line for line in out.splitlines() if not line.startswith("verify:")]
    assert status == 1 and len(problems) == 2
    missing = next(line for line in problems if line.startswith("missing:"))
    assert dicom_uuid in missing and "instances/instance-" in missing
    assert f"s3://{s3_backend.bucket}/{dicom_uuid}.dcm" in missing
    assert any(line.startswith("wrong size:") and "holds 5 bytes" in line for line in problems)


def test_migrate_refuses_damaged_source_and_deletes_only_verified(tmp_path, s3_backend, capsys):
    orthanc = OrthancFolder(str(tmp_path))
    config = orthanc.config(s3_backend)
    damaged = next(uuid for uuid, (kind, _) in orthanc.files.items() if kind == 1)
    stored = orthanc.files[damaged][1]
    with open(orthanc.path(damaged), "wb") as file:
        file.write(bytes([stored[0] ^ 1]) + stored[1:])  # same size, other MD5

    status, out, _ = run("migrate", "--config", config, "--delete-source", capsys=capsys)
    assert status == 1
    assert f"{damaged} (type 1)" in out and "MD5 differs" in out
    assert damaged + ".dcm" not in s3_backend.keys()
    assert os.path.exists(orthanc.path(damaged))  # a damaged source stays where it is
    others = [uuid for uuid in orthanc.files if uuid != damaged]
    assert not any(os.path.exists(orthanc.path(uuid)) for uuid in others)
    assert sorted(s3_backend.keys()) == sorted(name for name in orthanc.names() if not name.startswith(damaged))


def test_migrate_encrypted_then_reencrypt_after_rotation(tmp_path, s3_backend, capsys):
    orthanc = OrthancFolder(str(tmp_path))
    key_1 = write_key(str(tmp_path), "1.key")
    config = orthanc.config(s3_backend, StorageEncryption={"MasterKey": [1, key_1]})
    assert run("migrate", "--config", config, capsys=capsys)[0] == 0
    assert s3_backend.keys() == orthanc.names(encrypted=True)
    assert {s3_backend.read(name)[:6] for name in s3_backend.keys()} == {b"A1" + struct.pack("<I", 1)}
    assert run("verify", "--config", config, "--deep", capsys=capsys)[0] == 0

    key_2 = write_key(str(tmp_path), "2.key")
    rotated = orthanc.config(s3_backend, StorageEncryption={"MasterKey": [2, key_2],
                                                            "PreviousMasterKeys": [[1, key_1]]})
    status, out, _ = run("re-encrypt", "--config", rotated, capsys=capsys)
    assert status == 0 and f"{len(orthanc.files)} re-encrypted" in out
    assert {s3_backend.read(name)[:6] for name in s3_backend.keys()} == {b"A1" + struct.pack("<I", 2)}
    status, out, _ = run("re-encrypt", "--config", rotated, capsys=capsys)  # resumable: all current now
    assert status == 0 and f"{len(orthanc.files)} current" in out
    only_new = orthanc.config(s3_backend, StorageEncryption={"MasterKey": [2, key_2]})
    assert run("verify", "--config", only_new, "--deep", capsys=capsys)[0] == 0


def test_migrate_and_reencrypt_record_the_owner_and_reencrypt_to_a3(tmp_path, s3_backend, capsys):
    orthanc = OrthancFolder(str(tmp_path))
    key_1 = write_key(str(tmp_path), "1.key")
    config = orthanc.config(s3_backend, StorageEncryption={"MasterKey": [1, key_1]})
    assert run("migrate", "--config", config, capsys=capsys)[0] == 0

    def owners():
        return {name: s3_backend.read_with_metadata(name)[1].get("orthanc-attachment") for name in s3_backend.keys()}
    # as Orthanc hands them to the plugin: a custom attachment (type 1025) as content type 0 (unknown)
    content_types = {entry.uuid: entry.attachment().content_type
                     for entry in read_sqlite_index(os.path.join(orthanc.index, "index"))}
    expected = {name: f"{uuid}:{content_types[uuid]}" for name in s3_backend.keys()
                for uuid in orthanc.files if name.startswith(uuid)}
    assert len(expected) == len(orthanc.files) and owners() == expected

    a3 = orthanc.config(s3_backend, StorageEncryption={"MasterKey": [1, key_1], "Format": "A3"})
    status, out, _ = run("re-encrypt", "--config", a3, capsys=capsys)
    assert status == 0 and f"{len(orthanc.files)} re-encrypted" in out
    assert {s3_backend.read(name)[:2] for name in s3_backend.keys()} == {b"A3"}
    assert owners() == expected
    assert run("verify", "--config", a3, "--deep", capsys=capsys)[0] == 0


def test_commands_refuse_bad_setup(tmp_path, s3_backend, capsys):
    orthanc = OrthancFolder(str(tmp_path))
    config = orthanc.config(s3_backend)
    status, _, err = run("re-encrypt", "--config", config, capsys=capsys)
    assert status == 2 and "needs StorageEncryption" in err
    os.remove(os.path.join(orthanc.index, "index"))
    status, _, err = run("verify", "--config", config, capsys=capsys)
    assert status == 2 and "no Orthanc SQLite index" in err and "--orthanc" in err
