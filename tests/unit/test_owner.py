"""The owner of an object (issue 15), in memory: A3's binding, the area recording and checking the owner.

The metadata each provider records, and the paths the conformance suite does not reach (S3's transfer
manager, GCS without the metadata header), are tests/providers/test_owner_metadata.py."""

import os

import pytest

from orthanc_objstore.areas.contract import ObjectArea
from orthanc_objstore.areas.naming import Naming
from orthanc_objstore.crypto import a3 as crypto_a3
from orthanc_objstore.crypto import formats as crypto
from orthanc_objstore.errors import IntegrityError, WrongOwner
from orthanc_objstore.storage.encrypted import EncryptedStore
from orthanc_objstore.storage.protocol import Owner
from orthanc_objstore.storage.providers.memory import MemoryStore

UUID_A, UUID_B = "8a3e6a47-3c1d-4f1e-9a53-2f8d3c0b7e11", "0c1b2a39-7d4e-4b6f-8e1a-5c3d2b1a0f9e"
KEYRING = crypto.Keyring(3, os.urandom(32))


def encrypted(inner, fmt="A3"):
    return EncryptedStore(inner, KEYRING, fmt)


# --- A3 -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("other", [crypto_a3.a3_binding(UUID_B, 1), crypto_a3.a3_binding(UUID_A, 3)], ids=["uuid", "type"])
def test_a3_fails_authentication_for_another_attachment(other):
    binding = crypto_a3.a3_binding(UUID_A, 1)
    blob = crypto.encrypt(os.urandom(3 * crypto.A2_CHUNK_SIZE + 5), KEYRING, "A3", binding)
    assert blob[:2] == b"A3" and len(blob) == 70 + 3 * crypto.A2_CHUNK_SIZE + 5 + 4 * 16  # A2's size
    with pytest.raises(crypto.DecryptionError, match="A3 chunk 0 of 4 fails authentication.*another attachment"):
        crypto.decrypt(blob, KEYRING, other)
    with pytest.raises(crypto.DecryptionError, match="bound to its attachment"):
        crypto.decrypt(blob, KEYRING)


def test_a3_is_not_a2_with_another_version_byte():
    """The binding is authenticated: relabelling an A3 object as A2 (or back) fails."""
    binding = crypto_a3.a3_binding(UUID_A, 1)
    a3 = crypto.encrypt(b"attachment", KEYRING, "A3", binding)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(b"A2" + a3[2:], KEYRING)
    a2 = crypto.encrypt(b"attachment", KEYRING, "A2")
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(b"A3" + a2[2:], KEYRING, binding)
    with pytest.raises(crypto.CryptoError, match="binding is needed"):
        crypto.encrypt(b"x", KEYRING, "A3")


def test_a3_range_reads_check_the_owner_and_a1_a2_stay_readable():
    inner = MemoryStore()
    store, owner = encrypted(inner), Owner(UUID_A, 1)
    plaintext = os.urandom(5 * crypto.A2_CHUNK_SIZE)
    store.put("a.dcm.enc", plaintext, owner=owner)
    assert store.get_range("a.dcm.enc", 4 * crypto.A2_CHUNK_SIZE, 100, owner=owner) == plaintext[-crypto.A2_CHUNK_SIZE:][:100]
    inner.put("a.dcm.enc", inner.get("a.dcm.enc"))  # the metadata lost: A3 still tells
    with pytest.raises(IntegrityError, match="A3 chunk 4 of 5 fails authentication.*another attachment"):
        store.get_range("a.dcm.enc", 4 * crypto.A2_CHUNK_SIZE, 100, owner=Owner(UUID_B, 1))
    for fmt in ("A1", "A2"):
        encrypted(inner, fmt).put(f"{fmt}.dcm.enc", plaintext, owner=owner)
        assert store.get(f"{fmt}.dcm.enc", owner=owner) == plaintext
    store.put("no-owner.dcm.enc", b"no owner given")  # nothing to bind: written as A2
    assert inner.get("no-owner.dcm.enc")[:2] == b"A2" and store.get("no-owner.dcm.enc") == b"no owner given"


def test_config_accepts_a3():
    from orthanc_objstore.config import sections as config
    assert "A3" in config.ENCRYPTION_FORMATS


# --- the area and the metadata ----------------------------------------------------------------------

def test_the_area_records_and_checks_the_owner():
    store = MemoryStore()
    area = ObjectArea(store, Naming())
    area.create(UUID_A, 1, b"patient A")
    area.create(UUID_B, 1, b"patient B")
    assert store.recorded_owner(f"{UUID_A}.dcm") == f"{UUID_A}:1"
    store.swap(f"{UUID_A}.dcm", f"{UUID_B}.dcm")
    for read in (lambda: area.read(UUID_A, 1), lambda: area.read_range(UUID_A, 1, 0, 5)):
        with pytest.raises(WrongOwner) as caught:
            read()
        assert UUID_A in str(caught.value) and UUID_B in str(caught.value)
