"""End to end: an Orthanc that kept its own files is migrated into S3 (moto) by the offline tool, then reads
everything back through the plugin; verify passes, then names an object deleted behind its back."""

import base64
import os
import shutil
import struct

import pytest
from support.dicom import make_instances
from support.offline_tool import tool, tool_config
from support.orthanc import HOST_VERSION

pytestmark = [pytest.mark.orthanc, pytest.mark.orthanc_versions(HOST_VERSION)]

PATIENT_ATTACHMENT = b"a user-defined attachment of the patient, type 1025"


@pytest.mark.parametrize("compressed, encrypted, through_rest", [
    (False, False, False), (True, False, True), (True, True, False)],
    ids=["plain", "compressed-rest-index", "compressed-encrypted-A1"])
def test_migrate_then_read_back_and_verify(s3_backend, orthanc_factory, compressed, encrypted, through_rest):
    orthanc = orthanc_factory({"StorageCompression": compressed})  # no storage section: Orthanc's own storage
    originals = {orthanc.upload(dicom)["ID"]: dicom for dicom in make_instances(6, studies=2)}
    patient = orthanc.get_json("/patients")[0]
    orthanc.put(f"/patients/{patient}/attachments/1025", PATIENT_ATTACHMENT)
    uuids = {}
    for instance in originals:
        for kind in orthanc.get_json(f"/instances/{instance}/attachments?full").values():
            uuids[orthanc.get_json(f"/instances/{instance}/attachments/{kind}/info")["Uuid"]] = (instance, kind)
    patient_uuid = orthanc.get_json(f"/patients/{patient}/attachments/1025/info")["Uuid"]

    settings = s3_backend.settings(HybridMode="Disabled")
    if encrypted:
        key_path = orthanc.write_file("master.key", base64.b64encode(os.urandom(32)))
        settings[s3_backend.section]["StorageEncryption"] = {"MasterKey": [7, key_path]}
    config = tool_config(orthanc, settings)
    if through_rest:  # any index back-end: read through the running Orthanc (files are immutable)
        refused = tool("migrate", "--config", config)  # its SQLite index is in use: refused, not read
        assert refused.returncode == 2 and "Orthanc is running" in refused.stderr and "--orthanc" in refused.stderr
        migrated = tool("migrate", "--config", config, "--orthanc", orthanc.url)
        orthanc.stop()
    else:
        orthanc.stop()
        migrated = tool("migrate", "--config", config)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert f"{len(uuids) + 1} copied" in migrated.stdout and "files/s" in migrated.stderr

    suffix = ".enc" if encrypted else ""
    extension = {1: ".dcm", 3: ".dcm.head"}
    expected = sorted([uuid + extension[kind] + suffix for uuid, (_, kind) in uuids.items()]
                      + [patient_uuid + ".unk" + suffix])
    assert s3_backend.keys() == expected
    if encrypted:
        assert {s3_backend.read(key)[:6] for key in expected} == {b"A1" + struct.pack("<I", 7)}

    again = tool("migrate", "--config", config)  # resumable: a rerun finds everything in place
    assert again.returncode == 0 and f"{len(uuids) + 1} skipped" in again.stdout and "copied" not in again.stdout

    # Orthanc restarted with the plugin, its old StorageDirectory out of the way: every read comes from S3
    shutil.move(orthanc.host_path(orthanc.config["StorageDirectory"]), os.path.join(orthanc.workdir, "old-storage"))
    orthanc.config.update(settings)
    orthanc.start()
    for instance, dicom in originals.items():
        assert orthanc.get(f"/instances/{instance}/file") == dicom
        assert orthanc.get_json(f"/instances/{instance}/tags?simplify")["SOPInstanceUID"]
    assert orthanc.get(f"/patients/{patient}/attachments/1025/data") == PATIENT_ATTACHMENT
    orthanc.stop()

    verified = tool("verify", "--config", config, "--deep")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{len(uuids) + 1} ok" in verified.stdout

    if encrypted:  # key rotation, then re-encrypt: Orthanc reads everything with the new key alone
        new_key = orthanc.write_file("new.key", base64.b64encode(os.urandom(32)))
        settings[s3_backend.section]["StorageEncryption"] = {"MasterKey": [8, new_key],
                                                             "PreviousMasterKeys": [[7, key_path]]}
        rewritten = tool("re-encrypt", "--config", tool_config(orthanc, settings))
        assert rewritten.returncode == 0 and f"{len(expected)} re-encrypted" in rewritten.stdout, rewritten.stdout
        assert {s3_backend.read(key)[:6] for key in expected} == {b"A1" + struct.pack("<I", 8)}
        settings[s3_backend.section]["StorageEncryption"] = {"MasterKey": [8, new_key]}
        config = tool_config(orthanc, settings)
        orthanc.config.update(settings)
        orthanc.start()
        for instance, dicom in originals.items():
            assert orthanc.get(f"/instances/{instance}/file") == dicom
        orthanc.stop()

    victim = next(uuid for uuid, (_, kind) in uuids.items() if kind == 1)
    s3_backend.delete(victim + ".dcm" + suffix)
    broken = tool("verify", "--config", config)
    problems = [line for line in broken.stdout.splitlines() if not line.startswith("verify:")]
    assert broken.returncode == 1 and len(problems) == 1
    assert problems[0].startswith(f"missing: attachment {victim} (type 1) of instances/{uuids[victim][0]}")
    assert f"object-storage s3://{s3_backend.bucket}/{victim}.dcm{suffix}" in problems[0]


def test_verify_orphans_lists_and_deletes_only_what_no_attachment_names(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(s3_backend.settings())
    for dicom in make_instances(3, seed="1.2.826.0.1.3680043.8.498.65"):
        orthanc.upload(dicom)
    live = s3_backend.keys()
    lost = "0b4e5f6a-1c2d-4e3f-8a9b-0c1d2e3f4a5b.dcm"  # what a lost deletion queue would leave
    s3_backend.write(lost, b"left behind")
    s3_backend.write("notes/readme.txt", b"not the plugin's")  # a name the plugin never gives: left alone
    config = tool_config(orthanc, {})
    orthanc.stop()

    listed = tool("verify", "--config", config, "--orphans", "--grace", "0")
    assert listed.returncode == 1, listed.stderr
    assert f"orphan: s3://{s3_backend.bucket}/{lost} (11 bytes)" in listed.stdout
    assert "1 orphan object(s) (11 bytes)" in listed.stdout and "1 object(s) with names" in listed.stdout
    young = tool("verify", "--config", config, "--orphans")  # just written: inside the default hour of grace
    assert young.returncode == 0 and "0 orphan object(s)" in young.stdout and "1 more modified" in young.stdout
    unconfirmed = tool("verify", "--config", config, "--delete-orphans", "--grace", "0")
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    assert lost in s3_backend.keys()
    deleted = tool("verify", "--config", config, "--delete-orphans", "--yes", "--grace", "0")
    assert deleted.returncode == 0 and "deleted 1 orphan object(s)" in deleted.stdout, deleted.stderr
    assert s3_backend.keys() == sorted(live + ["notes/readme.txt"])
    assert tool("verify", "--config", config).returncode == 0  # every attachment still there
