"""End to end: two patients' DICOM objects swapped inside the bucket are refused, never served for each other."""

import pytest
from support.attachments import attachment_uuids, write_key
from support.backends import swap
from support.dicom import make_instances
from support.orthanc import HttpError

pytestmark = pytest.mark.orthanc

DICOM = 1


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
        # Bytes only, the metadata lost: A3's authenticated data still tells.
        swap(backend, *keys, keep_metadata=False)  # back in place, without metadata...
        swap(backend, *keys, keep_metadata=False)  # ...and swapped again
        before = orthanc.log().count("written for another attachment")
        assert_refused(orthanc, instances)
        assert orthanc.log().count("written for another attachment") >= before + 2

    # Objects without the metadata (as the official plugin or an older version wrote them) still read.
    swap(backend, *keys, keep_metadata=False)
    assert_served(orthanc, instances)
