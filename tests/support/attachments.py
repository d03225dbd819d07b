"""What an Orthanc under test holds, as the end-to-end tests check it: its attachments' uuids and the names the
official plugin gives them, the files of its StorageDirectory, the plugin's problems in its log; and the
two things tests put into it (instances, key files)."""

import base64
import os

EXTENSIONS = {1: ".dcm", 2: ".json", 3: ".dcm.head"}  # every other content type: ".unk"


def attachment_uuids(orthanc, instance_id) -> list[tuple[str, int]]:
    """(uuid, content type) of every attachment of an instance, as Orthanc's REST API lists them."""
    full = orthanc.get_json(f"/instances/{instance_id}/attachments?full")
    return [(orthanc.get_json(f"/instances/{instance_id}/attachments/{kind}/info")["Uuid"], kind)
            for kind in full.values()]


def official_names(uuid_types, root="", encrypted=False) -> list[str]:
    """The names the official plugin gives, written out by hand (flat layout)."""
    prefix = root + "/" if root and not root.endswith("/") else root
    return sorted(prefix + uuid + EXTENSIONS.get(kind, ".unk") + (".enc" if encrypted else "")
                  for uuid, kind in uuid_types)


def storage_files(orthanc) -> list[str]:
    """Every attachment file in Orthanc's StorageDirectory (aa/bb/uuid), the jobs and deletions folders left out;
    once a running Orthanc's deferred deletions have sent what they queued (a move removes its source copies
    through that queue)."""
    if orthanc.process is not None and orthanc.process.poll() is None:
        orthanc.wait_for_deletions()
    root = orthanc.host_path(orthanc.config["StorageDirectory"])
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in ("objstore-jobs", "objstore-deletions")]
        found += [name for name in files if not name.startswith(".")]
    return sorted(found)


def plugin_problems(orthanc) -> list[str]:
    """Error and warning lines of Orthanc's log written by the plugin."""
    return [line for line in orthanc.log().splitlines()
            if line[:1] in ("E", "W") and "orthanc-objstore:" in line and "storage area in" not in line]


def upload_all(orthanc, files) -> dict[str, bytes]:
    """Uploads DICOM files over REST: instance id → its bytes."""
    return {orthanc.upload(data)["ID"]: data for data in files}


def write_key(orthanc, name) -> tuple[str, bytes]:
    """A new key file in Orthanc's work folder; its path as Orthanc sees it (a chroot path on 1.13)."""
    key = os.urandom(32)
    return orthanc.write_file(name, base64.b64encode(key) + b"\n"), key
