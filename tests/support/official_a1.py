"""The official plugin's A1 layout (EncryptionHelpers.cpp) written out with raw AES, not with the package's code:
the reference the crypto and encryption tests compare the package's A1 against."""

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

IV = bytes(range(32, 64))
DEK = bytes(range(64, 96))


def official_a1(plaintext, key_id, master, iv, dek):
    """The official layout written out with raw AES (ECB blocks for the keystream, not crypto.py's code)."""
    ecb = Cipher(algorithms.AES(master), modes.ECB()).encryptor()
    keystream = ecb.update(bytes(16) + bytes(15) + b"\x01") + ecb.finalize()  # CTR from a zero counter block
    prefix = (b"A1" + struct.pack("<I", key_id) + bytes(a ^ b for a, b in zip(iv, keystream))
              + bytes(a ^ b for a, b in zip(dek, keystream)))
    assert len(prefix) == 70
    return prefix + AESGCM(dek).encrypt(iv, plaintext, prefix)


def official_decrypt(blob: bytes, master: bytes) -> bytes:
    """The official plugin's A1 decryption, from the published layout (as in test_crypto's vectors)."""
    ecb = Cipher(algorithms.AES(master), modes.ECB()).encryptor()
    keystream = ecb.update(bytes(31) + b"\x01") + ecb.finalize()
    iv = bytes(a ^ b for a, b in zip(blob[6:38], keystream))
    dek = bytes(a ^ b for a, b in zip(blob[38:70], keystream))
    return AESGCM(dek).decrypt(iv, blob[70:], blob[:70])
