"""Cold storage classes against the emulators: moto (S3 GLACIER, DEEP_ARCHIVE, GLACIER_IR) and Azurite (Archive).

What the emulators do, as measured here: moto refuses a GET (whole or ranged) of a GLACIER or
DEEP_ARCHIVE object with 403 ``InvalidObjectState`` naming the class, answers HEAD with the class,
and ``RestoreObject`` restores at once (``x-amz-restore: ongoing-request="false", expiry-date=...``): a
restore in progress cannot be played on it. It also refuses RestoreObject on a STANDARD or GLACIER_IR
object (InvalidObjectState), which the store never sends. Azurite 3.35 accepts the Archive tier on
upload and on Set Blob Tier, refuses downloads of an archived blob with 409 ``BlobArchived``, and
rehydrates at once when the tier is set to Hot (no ``rehydrate-pending`` state).
"""

import pytest

from orthanc_objstore.config.sections import S3Config
from orthanc_objstore.crypto.keys import Keyring
from orthanc_objstore.errors import NeedsRestore, NotFound
from orthanc_objstore.storage import protocol
from orthanc_objstore.storage.encrypted import EncryptedStore
from orthanc_objstore.storage.providers.s3 import S3Store

pytestmark = pytest.mark.orthanc


def s3_store(backend, **options):
    return S3Store(S3Config(bucket_name=backend.bucket, region="us-east-1", endpoint=backend.moto.url,
                            access_key="test", secret_key="test", virtual_addressing=False, max_retries=1,
                            **options))


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_s3_cold_objects_are_refused_until_restored(s3_backend, storage_class):
    store = s3_store(s3_backend, storage_class=storage_class)
    store.put("cold.dcm", b"0123456789")
    for read in (lambda: store.get("cold.dcm"), lambda: store.get_range("cold.dcm", 2, 4)):
        with pytest.raises(NeedsRestore) as caught:
            read()
        assert caught.value.storage_class == storage_class and not caught.value.restoring
        assert "'cold.dcm'" in str(caught.value) and storage_class in str(caught.value)
        assert "POST /objstore/restore" in str(caught.value)
    assert store.head("cold.dcm") == 10  # HEAD answers for a cold object
    assert store.cold_state("cold.dcm") == protocol.ColdState(storage_class, protocol.NOT_RESTORED)
    state = store.restore("cold.dcm", 2, "Bulk")
    assert state.storage_class == storage_class and state.restore == protocol.RESTORED and state.expiry
    assert store.get("cold.dcm") == b"0123456789"
    assert store.get_range("cold.dcm", 2, 4) == b"2345"
    assert store.restore("cold.dcm", 2, "Bulk") == state  # already readable: not asked again


def test_s3_instant_retrieval_and_standard_objects_need_no_restore(s3_backend):
    for storage_class in ("GLACIER_IR", "STANDARD_IA", None):
        store = s3_store(s3_backend, storage_class=storage_class)
        key = f"warm-{storage_class}.dcm"
        store.put(key, b"warm")
        assert store.get(key) == b"warm"
        state = store.cold_state(key)
        assert state.readable and state.restore == protocol.NOT_NEEDED
        assert store.restore(key, 7, "Standard") == state  # no RestoreObject sent: moto would refuse it
    with pytest.raises(NotFound):
        s3_store(s3_backend).cold_state("absent.dcm")
    with pytest.raises(ValueError, match="Standard, Bulk, Expedited"):
        s3_store(s3_backend).restore("warm-None.dcm", 7, "High")


def test_s3_cold_objects_behind_the_encryption_layer(s3_backend, tmp_path):
    inner = s3_store(s3_backend, storage_class="GLACIER")
    store = EncryptedStore(inner, Keyring(1, b"k" * 32), "A2")
    store.put("enc.dcm.enc", b"plain dicom")
    with pytest.raises(NeedsRestore):
        store.get("enc.dcm.enc")
    with pytest.raises(NeedsRestore):
        store.get_range("enc.dcm.enc", 0, 5)
    assert store.restore_tiers == ("Standard", "Bulk", "Expedited")
    assert store.cold_state("enc.dcm.enc").restore == protocol.NOT_RESTORED
    assert store.restore("enc.dcm.enc", 1, "Standard").readable
    assert store.get("enc.dcm.enc") == b"plain dicom"


def test_azure_archived_blobs_are_refused_until_rehydrated(azure_backend):
    store = azure_backend.store(access_tier="Archive")
    store.put("cold.dcm", b"0123456789")
    for read in (lambda: store.get("cold.dcm"), lambda: store.get_range("cold.dcm", 2, 4)):
        with pytest.raises(NeedsRestore) as caught:
            read()
        assert caught.value.storage_class == "Archive" and "'cold.dcm'" in str(caught.value)
        assert "POST /objstore/restore" in str(caught.value)
    assert store.cold_state("cold.dcm") == protocol.ColdState("Archive", protocol.NOT_RESTORED)
    with pytest.raises(ValueError, match="Standard, High"):
        store.restore("cold.dcm", 7, "Bulk")
    state = store.restore("cold.dcm", 7, "High")
    assert state == protocol.ColdState("Hot", protocol.NOT_NEEDED)  # Azurite rehydrates at once
    assert store.get("cold.dcm") == b"0123456789"
    warm = azure_backend.store(access_tier="Cool")
    warm.put("cool.dcm", b"cool")
    assert warm.cold_state("cool.dcm") == protocol.ColdState("Cool", protocol.NOT_NEEDED)
    assert warm.restore("cool.dcm", 7, "Standard").storage_class == "Cool"
