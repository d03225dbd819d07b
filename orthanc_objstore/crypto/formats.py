"""Client-side encryption, the front door: formats A1 (the official plugin's, byte for byte), A2 and A3 (ours).

This module knows bytes and keys only: no store, no Orthanc, no configuration. It raises its own
exceptions (``DecryptionError``, ``UnknownMasterKey``); the encryption wrapper
store turns them into the plugin's error vocabulary with the object's name. No message ever
contains key material.

Format A1 (the official orthanc-object-storage plugin, ``EncryptionHelpers.cpp``), N = plaintext size::

    off 0     len 2   b"A1"
    off 2     len 4   master key id, uint32 little-endian
    off 6     len 32  EIV  = IV  xor KS[0:32]
    off 38    len 32  EDEK = DEK xor KS[0:32]
    off 70    len N   AES-256-GCM ciphertext (key DEK, nonce = the 32-byte IV, AAD = bytes 0..69)
    off 70+N  len 16  GCM tag

    KS = AES-256-CTR keystream of the master key from an all-zero counter block (the same for every
    object under that master key: EDEK1 xor EDEK2 = DEK1 xor DEK2, which is why A2 exists).

Format A2 (this plugin only): a random data key per object wrapped with AES key wrap (RFC 3394)
under the master key, a fresh random 96-bit nonce, and the plaintext cut in chunks so that a range
read decrypts only the chunks it needs. Every chunk is authenticated together with the whole
header, its index and a last-chunk flag (the STREAM construction), so that tampering with any
header byte, reordering, dropping, truncating or appending chunks is detected::

    off 0   len 2   b"A2"
    off 2   len 4   master key id, uint32 little-endian
    off 6   len 4   chunk size C (plaintext bytes per chunk), uint32 little-endian
    off 10  len 8   plaintext size N, uint64 little-endian
    off 18  len 40  wrapped data key = AES-KW(master key, DEK)
    off 58  len 12  nonce base (random)
    off 70          chunks 0..n-1, n = max(1, ceil(N / C)); chunk i is
                    AES-256-GCM(DEK, nonce = base xor i (96-bit big-endian),
                                AAD = header[0:70] || uint64le(i) || uint8(i == n-1))
                    = ciphertext of min(C, N - i*C) bytes || 16-byte tag

    total size = 70 + N + 16 * n; an empty plaintext is one empty chunk (86 bytes).

Format A3 (this plugin only) is A2 with the attachment bound into the authenticated data: see
``crypto_a3``.

All formats are at least 86 bytes long. This module is the formats' front door: it dispatches between
``crypto_a1``, ``crypto_a2`` and ``crypto_a3``, over what they share (``crypto_keys``: sizes, errors, the
keyring).
"""

from . import a3 as crypto_a3
from .a1 import a1_plaintext_size, decrypt_a1, encrypt_a1
from .a2 import A2Header, decrypt_a2, decrypt_a2_chunks, encrypt_a2, parse_a2_header, unwrap_a2_key
from .keys import (
    A1_OVERHEAD,
    A2_CHUNK_SIZE,
    FORMATS,
    HEADER_SIZE,
    KEY_SIZE,
    MIN_OBJECT_SIZE,
    TAG_SIZE,
    CryptoError,
    DecryptionError,
    Keyring,
    UnknownMasterKey,
    _check_header,
    official_key_id_hex,
)

__all__ = ["A1_OVERHEAD", "A2_CHUNK_SIZE", "FORMATS", "HEADER_SIZE", "KEY_SIZE", "MIN_OBJECT_SIZE", "TAG_SIZE",
           "A2Header", "CryptoError", "DecryptionError", "Keyring", "UnknownMasterKey",
           "a1_plaintext_size", "decrypt", "decrypt_a1", "decrypt_a2", "decrypt_a2_chunks", "encrypt", "encrypt_a1",
           "encrypt_a2", "official_key_id_hex", "parse_a2_header", "unwrap_a2_key", "version_of"]


def version_of(blob: bytes) -> str:
    """'A1', 'A2' or 'A3' from the first bytes of an object; ``DecryptionError`` otherwise."""
    return _check_header(blob)


def encrypt(plaintext: bytes | bytearray, keyring: Keyring, fmt: str = "A1",
            binding: bytes | None = None) -> bytes | bytearray:
    """``plaintext`` in format ``fmt``; A3 needs the attachment's ``binding`` (``a3_binding``)."""
    if fmt == "A3":
        return crypto_a3.encrypt_a3(plaintext, keyring, binding)
    if fmt == "A1":
        return encrypt_a1(plaintext, keyring.current_id, keyring.current_key,
                          keystream=keyring.a1_keystream(keyring.current_id))
    if fmt == "A2":
        return encrypt_a2(plaintext, keyring.current_id, keyring.current_key)
    raise CryptoError(f"unknown encryption format {fmt!r}; allowed: {', '.join(FORMATS)}")


def decrypt(blob: bytes, keyring: Keyring, binding: bytes | None = None) -> bytes | bytearray:
    """Decrypts any format, dispatching on the version in the header (A3 needs its ``binding``)."""
    if version_of(blob) == "A3":
        return crypto_a3.decrypt_a3(blob, keyring, binding)
    return decrypt_a1(blob, keyring) if version_of(blob) == "A1" else decrypt_a2(blob, keyring)
