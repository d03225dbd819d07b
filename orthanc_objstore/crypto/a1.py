"""Format A1, the official plugin's, byte for byte (layout in ``formats``): encrypt and decrypt, in one buffer."""

import os
import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .keys import (
    A1_IV_SIZE,
    A1_OVERHEAD,
    HEADER_SIZE,
    KEY_SIZE,
    SPARE_BYTES,
    STREAM_STEP,
    TAG_SIZE,
    CryptoError,
    DecryptionError,
    Keyring,
    a1_keystream,
    check_header,
    check_key_id,
    xor,
)


def encrypt_a1(plaintext: bytes | bytearray, key_id: int, master_key: bytes, *, iv: bytes | None = None,
               dek: bytes | None = None, keystream: bytes | None = None) -> bytearray:
    """The official plugin's format. ``iv``/``dek`` are fresh random values unless given (test vectors).

    Encrypts into one preallocated buffer (no other whole-object copy) and returns it."""
    check_key_id(key_id)
    iv = os.urandom(A1_IV_SIZE) if iv is None else iv
    dek = os.urandom(KEY_SIZE) if dek is None else dek
    keystream = keystream or a1_keystream(master_key)
    prefix = b"A1" + struct.pack("<I", key_id) + xor(iv, keystream) + xor(dek, keystream)
    encryptor = Cipher(algorithms.AES(dek), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(prefix)
    size = len(plaintext)
    blob = bytearray(HEADER_SIZE + size + TAG_SIZE)  # the one output buffer: header, ciphertext, tag
    blob[:HEADER_SIZE] = prefix
    with memoryview(plaintext) as source, memoryview(blob) as target:
        for offset in range(0, size, STREAM_STEP):
            step = source[offset:offset + STREAM_STEP]
            # the slice reaches into the tag's 16 bytes: cryptography < 42 wants block size - 1 spare bytes
            start = HEADER_SIZE + offset
            encryptor.update_into(step, target[start:start + len(step) + TAG_SIZE])
    encryptor.finalize()
    blob[HEADER_SIZE + size:] = encryptor.tag
    return blob


def decrypt_a1(blob: bytes, keyring: Keyring) -> bytearray:
    """The plaintext, decrypted into one new buffer (``bytes(...)`` of it is the caller's one copy)."""
    check_header(blob, "A1")
    key_id = struct.unpack_from("<I", blob, 2)[0]
    keystream = keyring.a1_keystream(key_id)
    if len(blob) < A1_OVERHEAD:
        raise DecryptionError(f"it is {len(blob)} bytes long, shorter than the {A1_OVERHEAD} bytes of any "
                              "A1 object (truncated)")
    iv = xor(blob[6:38], keystream)
    dek = xor(blob[38:70], keystream)
    size = len(blob) - A1_OVERHEAD
    with memoryview(blob) as view:
        decryptor = Cipher(algorithms.AES(dek), modes.GCM(iv, bytes(view[-TAG_SIZE:]))).decryptor()
        decryptor.authenticate_additional_data(bytes(view[:HEADER_SIZE]))
        plaintext = _decrypt_stream_into(decryptor, view[HEADER_SIZE:HEADER_SIZE + size])
    try:
        decryptor.finalize()
    except InvalidTag:
        raise DecryptionError(f"its A1 authentication tag does not match (master key id {key_id}): the object "
                              "was tampered with, truncated or extended, or that id names another key") from None
    return plaintext


def _decrypt_stream_into(decryptor, body) -> bytearray:
    """``body`` through ``decryptor`` into one new buffer of its size, in steps (not yet authenticated)."""
    size = len(body)
    output = bytearray(size + SPARE_BYTES)
    with memoryview(output) as target:
        for offset in range(0, size, STREAM_STEP):
            step = body[offset:offset + STREAM_STEP]
            decryptor.update_into(step, target[offset:offset + len(step) + SPARE_BYTES])
    del output[size:]  # a minor shrink: CPython keeps the buffer, nothing is copied
    return output


def a1_plaintext_size(object_size: int) -> int:
    if object_size < A1_OVERHEAD:
        raise DecryptionError(f"it is {object_size} bytes long, shorter than the {A1_OVERHEAD} bytes of any "
                              "A1 object (truncated)")
    return object_size - A1_OVERHEAD


class A1:
    """Format A1 as the registry (``formats.Format``) sees it: one GCM message, so no range reads."""

    name = "A1"
    ranges = False

    def encrypt(self, plaintext: bytes | bytearray, keyring: Keyring, binding: bytes | None) -> bytes | bytearray:
        return encrypt_a1(plaintext, keyring.current_id, keyring.current_key,
                          keystream=keyring.a1_keystream(keyring.current_id))

    def decrypt(self, blob: bytes, keyring: Keyring, binding: bytes | None) -> bytes | bytearray:
        return decrypt_a1(blob, keyring)

    def plaintext_size(self, header: bytes, object_size: Callable[[], int]) -> int:
        return a1_plaintext_size(object_size())

    def parse_header(self, header: bytes, binding: bytes | None):
        raise CryptoError("an A1 object is one GCM message: it cannot be read in ranges")

    def unwrap_key(self, header, keyring: Keyring) -> bytes:
        raise CryptoError("an A1 object is one GCM message: it cannot be read in ranges")

    def decrypt_chunks(self, header, dek: bytes, first_index: int, stored) -> bytes | bytearray:
        raise CryptoError("an A1 object is one GCM message: it cannot be read in ranges")
