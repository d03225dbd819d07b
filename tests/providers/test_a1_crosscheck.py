"""Format A1 against an independent implementation: Crypto++ (the official plugin's library), through
build/a1_cryptopp, and this plugin's orthanc_objstore.crypto, in both directions, byte for byte."""

import importlib.util
import os

import pytest
from support import cryptopp

from orthanc_objstore.config.rules import load_master_key
from orthanc_objstore.crypto import a1 as crypto_a1
from orthanc_objstore.crypto import formats as crypto

SIZES = (0, 1, 16, 64 * 1024 + 1, 300_000)
OLD_ID, NEW_ID = 1, 2


def _unit_vectors():
    """The pinned vectors of tests/unit/test_crypto.py (computed there by the tests' own A1 code)."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "unit", "test_crypto.py")
    spec = importlib.util.spec_from_file_location("unit_test_crypto_vectors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two master keys (old id 1, new id 2) as key files, and what this plugin reads from those files."""
    folder = tmp_path_factory.mktemp("keys")
    files = {key_id: cryptopp.write_key_file(str(folder / f"{key_id}.key"), os.urandom(32))
             for key_id in (OLD_ID, NEW_ID)}
    return files, {key_id: load_master_key(path) for key_id, path in files.items()}


def plugin_keyring(keys, current=NEW_ID, previous=()):
    _, loaded = keys
    return crypto.Keyring(current, loaded[current], [(key_id, loaded[key_id]) for key_id in previous])


def plaintext_of(size):
    return os.urandom(size)


def test_cryptopp_writes_the_unit_tests_pinned_vectors(tmp_path):
    vectors = _unit_vectors()
    key_file = cryptopp.write_key_file(str(tmp_path / "master.key"), vectors.MASTER)
    for plaintext, expected in ((b"Orthanc", vectors.PINNED_A1_ORTHANC), (b"", vectors.PINNED_A1_EMPTY)):
        assert cryptopp.encrypt(plaintext, 7, key_file, iv=vectors.IV, dek=vectors.DEK) == expected


@pytest.mark.parametrize("size", SIZES)
def test_same_iv_and_data_key_give_the_same_bytes(keys, size):
    files, loaded = keys
    plaintext, iv, dek = plaintext_of(size), os.urandom(32), os.urandom(32)
    theirs = cryptopp.encrypt(plaintext, NEW_ID, files[NEW_ID], iv=iv, dek=dek)
    ours = crypto_a1.encrypt_a1(plaintext, NEW_ID, loaded[NEW_ID], iv=iv, dek=dek)
    assert len(theirs) == size + crypto.A1_OVERHEAD
    assert bytes(ours) == theirs


@pytest.mark.parametrize("size", SIZES)
def test_cryptopp_encrypts_and_the_plugin_decrypts(keys, size):
    files, _ = keys
    plaintext = plaintext_of(size)
    blob = cryptopp.encrypt(plaintext, NEW_ID, files[NEW_ID])
    assert blob[:6] == b"A1" + NEW_ID.to_bytes(4, "little") and len(blob) == size + 86
    assert bytes(crypto.decrypt(blob, plugin_keyring(keys))) == plaintext


@pytest.mark.parametrize("size", SIZES)
def test_the_plugin_encrypts_and_cryptopp_decrypts(keys, size):
    files, _ = keys
    plaintext = plaintext_of(size)
    blob = bytes(crypto.encrypt(plaintext, plugin_keyring(keys), "A1"))
    assert cryptopp.decrypt(blob, NEW_ID, files[NEW_ID]) == plaintext


@pytest.mark.parametrize("size", (0, 64 * 1024 + 1))
def test_an_object_under_the_previous_master_key_is_read_by_both(keys, size):
    files, _ = keys
    plaintext = plaintext_of(size)
    by_cryptopp = cryptopp.encrypt(plaintext, OLD_ID, files[OLD_ID])
    by_plugin = bytes(crypto.encrypt(plaintext, plugin_keyring(keys, current=OLD_ID), "A1"))
    rotated = plugin_keyring(keys, current=NEW_ID, previous=(OLD_ID,))
    for blob in (by_cryptopp, by_plugin):
        assert blob[2:6] == OLD_ID.to_bytes(4, "little")
        assert bytes(crypto.decrypt(blob, rotated)) == plaintext
        assert cryptopp.decrypt(blob, NEW_ID, files[NEW_ID], previous=((OLD_ID, files[OLD_ID]),)) == plaintext
        # and without the previous key, both refuse and say which key id is missing
        with pytest.raises(crypto.UnknownMasterKey, match=f"master key id {OLD_ID}"):
            crypto.decrypt(blob, plugin_keyring(keys))
        with pytest.raises(cryptopp.Refused, match=f"master key id {OLD_ID} is not among the keys"):
            cryptopp.decrypt(blob, NEW_ID, files[NEW_ID])


def _regions(size):
    """One byte in each region of an A1 object of ``size`` plaintext bytes: (name, offset)."""
    regions = [("version", 0), ("key id", 2), ("EIV", 6 + 17), ("EDEK", 38 + 5)]
    if size:
        regions.append(("ciphertext", 70 + size // 2))
    regions.append(("tag", 70 + size + 15))
    return regions


@pytest.mark.parametrize("size", (0, 1, 300_000))
@pytest.mark.parametrize("writer", ("cryptopp", "plugin"))
def test_a_flipped_byte_in_any_region_is_refused_by_both(keys, size, writer):
    files, _ = keys
    plaintext = plaintext_of(size)
    if writer == "cryptopp":
        blob = cryptopp.encrypt(plaintext, NEW_ID, files[NEW_ID])
    else:
        blob = bytes(crypto.encrypt(plaintext, plugin_keyring(keys), "A1"))
    # the untouched object reads back on both sides, so every refusal below is the flipped byte's doing
    assert bytes(crypto.decrypt(blob, plugin_keyring(keys))) == plaintext
    assert cryptopp.decrypt(blob, NEW_ID, files[NEW_ID]) == plaintext
    damaged = [(name, blob[:offset] + bytes([blob[offset] ^ 0x01]) + blob[offset + 1:])
               for name, offset in _regions(size)]
    damaged += [("one byte appended", blob + b"\0"), ("last byte cut", blob[:-1])]
    for name, bad in damaged:
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(bad, plugin_keyring(keys))
        with pytest.raises(cryptopp.Refused):
            cryptopp.decrypt(bad, NEW_ID, files[NEW_ID])
        assert bad != blob, name


def test_cryptopp_reads_key_files_as_the_plugin_does(keys, tmp_path):
    """Whitespace in a key file is ignored by both: a key file wrapped over two lines is the same key."""
    files, loaded = keys
    text = open(files[NEW_ID], "rb").read().strip()
    wrapped = tmp_path / "wrapped.key"
    wrapped.write_bytes(b"  " + text[:20] + b"\n" + text[20:] + b"\r\n")
    assert load_master_key(str(wrapped)) == loaded[NEW_ID]
    blob = cryptopp.encrypt(b"wrapped", NEW_ID, str(wrapped))
    assert bytes(crypto.decrypt(blob, plugin_keyring(keys))) == b"wrapped"
