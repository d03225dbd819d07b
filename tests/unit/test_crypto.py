"""The encryption formats byte by byte: A1 against vectors built from the official plugin's published layout."""

import os
import struct
import threading

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from support.official_a1 import DEK, IV, official_a1

from orthanc_objstore.crypto import a1 as crypto_a1
from orthanc_objstore.crypto import a2 as crypto_a2
from orthanc_objstore.crypto import a3 as crypto_a3
from orthanc_objstore.crypto import formats as crypto
from orthanc_objstore.storage.budget import ByteBudget, InputTooLarge

MASTER = bytes(range(32))

# Computed once from the layout in the official plugin's EncryptionHelpers.cpp with the helper below, and
# pinned here so that a change to either side shows: key id 7, master key 00..1f, IV 20..3f, DEK 40..5f.
PINNED_A1_ORTHANC = bytes.fromhex(
    "413107000000d2b122950e6cb9f781dab041f10359afc06c449d7e8ca9d29ecfa10a74ff0802b2d142f56e0cd997e1bad0219163"
    "39cfa00c24fd1eecc9b2feafc16a149f6862c576093f58a450e4fc9509acd94f20809481e767cef1e3")
PINNED_A1_EMPTY = bytes.fromhex(
    "413107000000d2b122950e6cb9f781dab041f10359afc06c449d7e8ca9d29ecfa10a74ff0802b2d142f56e0cd997e1bad0219163"
    "39cfa00c24fd1eecc9b2feafc16a149f6862822a065709e372aa64d9d40c257fa094")


def keyring(*keys, current=None):
    keys = keys or ((1, MASTER),)
    current_id, current_key = current or keys[0]
    return crypto.Keyring(current_id, current_key, keys)


def test_the_pinned_vectors_follow_the_published_layout():
    assert official_a1(b"Orthanc", 7, MASTER, IV, DEK) == PINNED_A1_ORTHANC
    assert official_a1(b"", 7, MASTER, IV, DEK) == PINNED_A1_EMPTY
    assert PINNED_A1_ORTHANC[:6] == b"A1\x07\x00\x00\x00"
    assert len(PINNED_A1_ORTHANC) == 7 + 86 and len(PINNED_A1_EMPTY) == 86


@pytest.mark.parametrize("plaintext, expected", [(b"Orthanc", PINNED_A1_ORTHANC), (b"", PINNED_A1_EMPTY)])
def test_a1_encryption_matches_the_vectors(plaintext, expected):
    assert crypto_a1.encrypt_a1(plaintext, 7, MASTER, iv=IV, dek=DEK) == expected
    assert crypto.decrypt(expected, keyring((7, MASTER))) == plaintext


def test_a1_matches_the_official_layout_on_large_and_random_inputs():
    for size in (1, 15, 16, 17, 100_000, 3 * 1024 * 1024 + 5):
        plaintext, master, iv, dek = os.urandom(size), os.urandom(32), os.urandom(32), os.urandom(32)
        key_id = int.from_bytes(os.urandom(4), "little")
        expected = official_a1(plaintext, key_id, master, iv, dek)
        assert crypto_a1.encrypt_a1(plaintext, key_id, master, iv=iv, dek=dek) == expected
        assert crypto.decrypt(expected, keyring((key_id, master))) == plaintext


def test_a1_objects_we_write_decrypt_with_the_official_recipe():
    plaintext = os.urandom(100_000)
    blob = crypto.encrypt(plaintext, keyring((7, MASTER)), "A1")
    ecb = Cipher(algorithms.AES(MASTER), modes.ECB()).encryptor()
    keystream = ecb.update(bytes(31) + b"\x01") + ecb.finalize()
    iv = bytes(a ^ b for a, b in zip(blob[6:38], keystream))
    dek = bytes(a ^ b for a, b in zip(blob[38:70], keystream))
    assert blob[:6] == b"A1\x07\x00\x00\x00"
    assert AESGCM(dek).decrypt(iv, blob[70:], blob[:70]) == plaintext


def test_every_object_gets_a_fresh_iv_and_data_key():
    ring = keyring()
    first, second = crypto.encrypt(b"same", ring, "A1"), crypto.encrypt(b"same", ring, "A1")
    assert first[6:38] != second[6:38] and first[38:70] != second[38:70]
    first, second = crypto.encrypt(b"same", ring, "A2"), crypto.encrypt(b"same", ring, "A2")
    assert first[18:58] != second[18:58] and first[58:70] != second[58:70]


def test_a2_layout():
    plaintext = os.urandom(2 * crypto.A2_CHUNK_SIZE + 10)
    blob = crypto_a2.encrypt_a2(plaintext, 9, MASTER, dek=DEK, nonce=bytes(12))
    version, key_id, chunk_size, size = struct.unpack_from("<2sIIQ", blob)
    assert (version, key_id, chunk_size, size) == (b"A2", 9, crypto.A2_CHUNK_SIZE, len(plaintext))
    assert aes_key_unwrap(MASTER, blob[18:58]) == DEK
    assert len(blob) == 70 + len(plaintext) + 3 * 16
    header = blob[:70]
    chunk1 = blob[70 + crypto.A2_CHUNK_SIZE + 16:70 + 2 * (crypto.A2_CHUNK_SIZE + 16)]
    nonce1 = (1).to_bytes(12, "big")
    aad1 = header + struct.pack("<QB", 1, 0)
    assert AESGCM(DEK).decrypt(nonce1, chunk1, aad1) == plaintext[crypto.A2_CHUNK_SIZE:2 * crypto.A2_CHUNK_SIZE]
    last = blob[70 + 2 * (crypto.A2_CHUNK_SIZE + 16):]
    assert AESGCM(DEK).decrypt((2).to_bytes(12, "big"), last, header + struct.pack("<QB", 2, 1)) == plaintext[-10:]
    assert crypto.decrypt(blob, keyring((9, MASTER))) == plaintext


@pytest.mark.parametrize("fmt", crypto.FORMATS)
@pytest.mark.parametrize("size", [0, 1, 16, crypto.A2_CHUNK_SIZE - 1, crypto.A2_CHUNK_SIZE, crypto.A2_CHUNK_SIZE + 1,
                                  5 * crypto.A2_CHUNK_SIZE])
def test_round_trip_sizes(fmt, size):
    plaintext = os.urandom(size)
    binding = crypto_a3.a3_binding("2b2ef2a3-5f8e41ac-9d6a5ee2-1f0f2cd9-bc4f4a0a", 1) if fmt == "A3" else None
    blob = crypto.encrypt(plaintext, keyring(), fmt, binding)
    assert blob[:2] == fmt.encode()
    assert crypto.decrypt(blob, keyring(), binding) == plaintext
    if fmt == "A3":
        assert crypto_a3.parse_a3_header(blob, binding).object_size == len(blob)
    elif fmt == "A2":
        assert crypto_a2.parse_a2_header(blob).object_size == len(blob)
    else:
        assert crypto_a1.a1_plaintext_size(len(blob)) == size


def test_a2_chunk_span_reads_only_the_needed_chunks():
    size, chunk = 10 * crypto.A2_CHUNK_SIZE + 123, crypto.A2_CHUNK_SIZE
    plaintext = os.urandom(size)
    blob = crypto.encrypt(plaintext, keyring(), "A2")
    header = crypto_a2.parse_a2_header(blob[:70])
    dek = crypto_a2.unwrap_a2_key(header, keyring())
    for start, length in ((0, 1), (chunk - 1, 2), (3 * chunk + 5, chunk), (size - 1, 1), (size - 200, 200),
                          (0, size)):
        first, offset, stored_length = header.chunk_span(start, length)
        expected_chunks = (start + length - 1) // chunk - start // chunk + 1
        assert stored_length <= expected_chunks * (chunk + 16)
        data = crypto_a2.decrypt_a2_chunks(header, dek, first, blob[offset:offset + stored_length])
        skip = start - first * chunk
        assert data[skip:skip + length] == plaintext[start:start + length]


def test_unknown_key_id_names_the_id_in_both_forms():
    blob = crypto.encrypt(b"data", keyring((258, MASTER)), "A1")
    with pytest.raises(crypto.UnknownMasterKey) as caught:
        crypto.decrypt(blob, keyring((1, os.urandom(32)), (2, os.urandom(32))))
    message = str(caught.value)
    assert caught.value.key_id == 258
    assert "258" in message and "'02010000'" in message and "1, 2" in message
    assert crypto.official_key_id_hex(7) == "07000000"


def test_byte_budget_refuses_inputs_larger_than_the_whole_budget():
    budget = ByteBudget(1024 * 1024)
    with pytest.raises(InputTooLarge, match="too large to encrypt: 1048577 bytes.*MaxConcurrentInputSize"):
        with budget.hold(1024 * 1024 + 1, "encrypt"):
            pass
    with budget.hold(1024 * 1024):
        assert budget.in_use == 1024 * 1024
    assert budget.in_use == 0


def test_byte_budget_works_beyond_4096_mb():
    """The official plugin computes the budget in a 32-bit integer: 4096 MB wraps to 0 there."""
    for megabytes in (4096, 5000, 1024 * 1024):
        budget = ByteBudget(megabytes * 1024 * 1024)
        with budget.hold(1):
            pass
        with budget.hold(megabytes * 1024 * 1024):
            assert budget.in_use == megabytes * 1024 * 1024
        with pytest.raises(InputTooLarge):
            with budget.hold(megabytes * 1024 * 1024 + 1):
                pass


def test_byte_budget_makes_a_second_holder_wait_until_bytes_are_released():
    budget = ByteBudget(100)
    acquired = threading.Event()

    def second():
        with budget.hold(50):
            acquired.set()

    with budget.hold(60):
        thread = threading.Thread(target=second)
        thread.start()
        while budget.waiting == 0 and thread.is_alive():
            threading.Event().wait(0.001)
        assert budget.waiting == 1
        assert not acquired.is_set()
    thread.join()
    assert acquired.is_set() and budget.in_use == 0
