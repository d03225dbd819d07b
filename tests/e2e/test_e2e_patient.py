"""End to end: two patients' DICOM objects swapped inside the bucket are refused, never served for each other."""

import os
import shutil

import pytest
from support.attachments import attachment_uuids, write_key
from support.backends import predate_owner_mark, swap
from support.dicom import make_instances
from support.orthanc import HOST_VERSION, HttpError

from orthanc_objstore.storage.protocol import OWNER_MARK

pytestmark = pytest.mark.orthanc

DICOM = 1
RECORD = {"s3": "orthanc-attachment", "azure": "orthanc_attachment", "gcs": "orthanc-attachment"}  # metadata names


def started(orthanc_factory, backend, fmt):
    """Orthanc over ``backend``, plain (fmt None) or encrypted in format ``fmt``."""
    orthanc = orthanc_factory({}, start=False)
    settings = backend.settings()
    if fmt is not None:
        key_path, _ = write_key(orthanc, "master.key")
        settings = backend.settings(StorageEncryption={"MasterKey": [1, key_path], "Format": fmt})
    orthanc.config.update(settings)
    return orthanc.start()


def two_patients(orthanc):
    """Two instances of two patients, of exactly the same size: {instance id: (dicom uuid, bytes)}."""
    files = make_instances(2, studies=2, seed="1.2.826.0.1.3680043.8.498.15")
    assert len(files[0]) == len(files[1]) and files[0] != files[1]
    instances = {}
    for data in files:
        instance = orthanc.upload(data)["ID"]
        uuid = next(uuid for uuid, kind in attachment_uuids(orthanc, instance) if kind == DICOM)
        instances[instance] = (uuid, data)
    patients = {orthanc.get_json(f"/instances/{instance}/patient")["ID"] for instance in instances}
    assert len(patients) == 2
    return instances


def assert_refused(orthanc, instances, *names):
    for instance in instances:
        with pytest.raises(HttpError) as caught:
            orthanc.get(f"/instances/{instance}/file")
        assert caught.value.status == 500, caught.value
    log = orthanc.log()
    for name in names:
        assert name in log


def assert_served(orthanc, instances):
    for instance, (_, data) in instances.items():
        assert orthanc.get(f"/instances/{instance}/file") == data


@pytest.mark.parametrize("fmt", [None, "A1", "A3"], ids=["plain", "A1", "A3"])
def test_swapped_objects_are_refused(backend, orthanc_factory, fmt):
    orthanc = started(orthanc_factory, backend, fmt)
    instances = two_patients(orthanc)
    (uuid_1, _), (uuid_2, _) = instances.values()
    suffix = ".dcm" if fmt is None else ".dcm.enc"
    keys = (uuid_1 + suffix, uuid_2 + suffix)
    assert sorted(backend.read(key) != b"" for key in keys) == [True, True]

    # A copy that keeps the metadata (a server-side copy, a sync tool): the recorded owner tells.
    swap(backend, *keys)
    assert_refused(orthanc, instances, f"written for attachment {uuid_2}", f"not for attachment {uuid_1}",
                   f"written for attachment {uuid_1}", f"not for attachment {uuid_2}")

    if fmt == "A3":
        # Bytes only, the metadata lost: the owner mark refuses bare bytes first (A3's authentication would too)
        swap(backend, *keys, keep_metadata=False)  # back in place, without metadata...
        swap(backend, *keys, keep_metadata=False)  # ...and swapped again
        before = orthanc.log().count("has no owner record")
        assert_refused(orthanc, instances)
        assert orthanc.log().count("has no owner record") >= before + 2

    swap(backend, *keys, keep_metadata=False)  # back in place, bytes only
    # Bare bytes put there after the owner mark: refused, even in their right place (nothing can tell).
    assert_refused(orthanc, instances, "has no owner record", OWNER_MARK)
    predate_owner_mark(backend)  # as if they had been written before the plugin began recording owners
    orthanc.restart()
    # Objects without the metadata older than the mark (the official plugin's, an older version's) still read.
    assert_served(orthanc, instances)


@pytest.mark.parametrize("fmt", [None, "A1", "A2"], ids=["plain", "A1", "A2"])
def test_a_swap_without_metadata_is_refused_by_default(backend, orthanc_factory, fmt):
    """Issue 23 §3: two same-size objects re-uploaded as bare bytes under each other's names (a restore from
    a backup that kept no metadata), default configuration: refused, never the other patient's file."""
    orthanc = started(orthanc_factory, backend, fmt)
    instances = two_patients(orthanc)
    (uuid_1, _), (uuid_2, _) = instances.values()
    suffix = ".dcm" if fmt is None else ".dcm.enc"
    keys = (uuid_1 + suffix, uuid_2 + suffix)
    mark = backend.modified(OWNER_MARK)
    swap(backend, *keys, keep_metadata=False)
    for key in keys:
        assert backend.modified(key) >= mark
    assert_refused(orthanc, instances, f"for attachment {uuid_1} of type 1: the object has no owner record",
                   f"for attachment {uuid_2} of type 1: the object has no owner record", "OwnerlessObjects")
    if orthanc.version != HOST_VERSION:  # 1.13 reads the tags as a range of the object (no MD5 to check)
        before = orthanc.log().count("has no owner record")
        for instance in instances:
            with pytest.raises(HttpError):
                orthanc.get(f"/instances/{instance}/tags")
        assert orthanc.log().count("has no owner record") >= before + 2

    # Several replicas share one mark: a restart (or another Orthanc) keeps the first one's time.
    orthanc.restart()
    assert backend.modified(OWNER_MARK) == mark
    assert_refused(orthanc, instances)

    # OwnerlessObjects Accept (a fleet where the official plugin still writes): the plugin checks nothing;
    # 1.10.1 serves the other patient's file (what the default prevents), 1.13 checks the MD5 itself.
    orthanc.config[backend.section]["OwnerlessObjects"] = "Accept"
    orthanc.restart()
    refusals = orthanc.log().count("has no owner record")
    if orthanc.version == HOST_VERSION:
        files = [orthanc.get(f"/instances/{instance}/file") for instance in instances]
        assert files == [data for _, data in reversed(list(instances.values()))]
    else:
        assert_refused(orthanc, instances)
    assert orthanc.log().count("has no owner record") == refusals


def test_ownerless_objects_refuse_refuses_even_old_objects(backend, orthanc_factory):
    orthanc = started(orthanc_factory, backend, None)
    instances = two_patients(orthanc)
    for uuid, _ in instances.values():
        data, _ = backend.read_with_metadata(uuid + ".dcm")
        backend.write(uuid + ".dcm", data)  # its owner record lost
    predate_owner_mark(backend)
    orthanc.restart()
    assert_served(orthanc, instances)  # older than the new mark
    orthanc.config[backend.section]["OwnerlessObjects"] = "Refuse"
    orthanc.restart()
    assert_refused(orthanc, instances, "OwnerlessObjects is Refuse")


@pytest.mark.orthanc_versions(HOST_VERSION)
def test_verify_deep_stamp_proves_then_records_the_owner(backend, orthanc_factory):
    """verify --deep --stamp: an ownerless object whose MD5 matches Orthanc's index gets its owner record;
    one that does not (a swap) is reported damaged and stays refused."""
    from support.offline_tool import tool, tool_config
    orthanc = started(orthanc_factory, backend, "A1")
    instances = two_patients(orthanc)
    keys = [uuid + ".dcm.enc" for uuid, _ in instances.values()]
    swap(backend, *keys, keep_metadata=False)
    orthanc.stop()
    config, env = tool_config(orthanc, {}), backend.environment()
    plain = tool("verify", "--config", config, "--deep", env=env)
    assert plain.returncode == 1 and plain.stdout.count("has no owner record") == 2, plain.stdout + plain.stderr
    swapped = tool("verify", "--config", config, "--deep", "--stamp", env=env)
    assert swapped.returncode == 1 and swapped.stdout.count("damaged: ") == 2, swapped.stdout
    assert all(not backend.read_with_metadata(key)[1] for key in keys)  # nothing stamped

    swap(backend, *keys, keep_metadata=False)  # back in place, still without metadata
    stamped = tool("verify", "--config", config, "--deep", "--stamp", env=env)
    assert stamped.returncode == 0 and "4 ok" in stamped.stdout, stamped.stdout + stamped.stderr
    for key, (uuid, _) in zip(keys, instances.values(), strict=True):
        metadata = backend.read_with_metadata(key)[1]
        assert metadata == {RECORD[backend.name]: f"{uuid}:1"}
    again = tool("verify", "--config", config, "--deep", env=env)
    assert again.returncode == 0 and "4 ok" in again.stdout  # the DICOM and its header, twice
    orthanc.start()
    assert_served(orthanc, instances)


def test_the_read_cache_never_serves_a_refused_object(backend, orthanc_factory):
    """The read cache on (the plugin's default, with a disk folder): a bare swap read once is refused again,
    not kept; what a start-up under OwnerlessObjects Accept kept on disk is refused after a return to the
    default, and the patients' own objects are still served from the cache."""
    orthanc = orthanc_factory({}, start=False)
    folder = os.path.join(orthanc.orthanc_workdir, "read-cache")
    orthanc.config.update(backend.settings(ReadCache={"Folder": folder, "FolderSize": 64}))
    orthanc.start()
    instances = two_patients(orthanc)
    assert_served(orthanc, instances)  # kept in the cache (memory and disk), checked for their owners
    keys = [uuid + ".dcm" for uuid, _ in instances.values()]
    swap(backend, *keys, keep_metadata=False)
    orthanc.restart()  # an empty memory cache; the disk entries are the right patients' bytes
    assert_served(orthanc, instances)

    shutil.rmtree(orthanc.host_path(folder))  # the disk entries gone: reads reach the bucket
    orthanc.restart()
    refusals = orthanc.log().count("has no owner record")
    for _ in range(2):  # the second read is refused as the first: nothing was kept
        assert_refused(orthanc, instances)
    assert orthanc.log().count("has no owner record") >= refusals + 4

    orthanc.config[backend.section]["OwnerlessObjects"] = "Accept"
    orthanc.restart()
    for instance in instances:  # read, and kept on disk (1.13 then refuses it by Orthanc's own MD5 check)
        try:
            orthanc.get(f"/instances/{instance}/file")
        except HttpError:
            assert orthanc.version != HOST_VERSION
    assert os.listdir(orthanc.host_path(folder))
    del orthanc.config[backend.section]["OwnerlessObjects"]
    orthanc.restart()
    refusals = orthanc.log().count("has no owner record")
    assert_refused(orthanc, instances)
    assert orthanc.log().count("has no owner record") >= refusals + 2
