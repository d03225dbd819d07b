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
``a3``.

All formats are at least 86 bytes long. This module is the formats' front door: ``REGISTRY`` holds one
``Format`` per version (``a1.A1``, ``a2.A2``, ``a3.A3``), ``format_of`` picks an object's from its header,
and ``encrypt``/``decrypt`` dispatch through it; what the formats share (sizes, errors, the keyring) is
in ``keys``.
"""

from collections.abc import Callable
from typing import Protocol

from .a1 import A1
from .a2 import A2, A2Header
from .a3 import A3
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
    check_header,
    official_key_id_hex,
)

__all__ = ["A1_OVERHEAD", "A2_CHUNK_SIZE", "FORMATS", "HEADER_SIZE", "KEY_SIZE", "MIN_OBJECT_SIZE", "REGISTRY",
           "TAG_SIZE", "CryptoError", "DecryptionError", "Format", "Keyring", "UnknownMasterKey", "decrypt",
           "encrypt", "format_of", "official_key_id_hex", "version_of"]


class Format(Protocol):
    """One encryption format. ``binding`` is the attachment an A3 object is bound to (``a3.a3_binding``);
    the other formats ignore it. Formats with ``ranges`` decrypt a range chunk by chunk: ``parse_header``
    (the 70-byte header; not yet authenticated), ``unwrap_key``, then ``decrypt_chunks`` of the stored
    chunks ``header.chunk_span`` names; the others raise ``CryptoError`` there."""

    name: str
    ranges: bool

    def encrypt(self, plaintext: bytes | bytearray, keyring: Keyring, binding: bytes | None) -> bytes | bytearray: ...

    def decrypt(self, blob: bytes, keyring: Keyring, binding: bytes | None) -> bytes | bytearray: ...

    def plaintext_size(self, header: bytes, object_size: Callable[[], int]) -> int:
        """The plaintext's size from the header, or (A1) from the object's size, asked only then."""
        ...

    def parse_header(self, header: bytes, binding: bytes | None) -> A2Header: ...

    def unwrap_key(self, header: A2Header, keyring: Keyring) -> bytes: ...

    def decrypt_chunks(self, header: A2Header, dek: bytes, first_index: int,
                       stored: bytes | memoryview) -> bytes | bytearray: ...


REGISTRY: dict[str, Format] = {fmt.name: fmt for fmt in (A1(), A2(), A3())}
assert tuple(REGISTRY) == FORMATS


def version_of(blob: bytes) -> str:
    """'A1', 'A2' or 'A3' from the first bytes of an object; ``DecryptionError`` otherwise."""
    return check_header(blob)


def format_of(blob: bytes) -> Format:
    """The format of an object, from its first bytes (at least 6); ``DecryptionError`` otherwise."""
    return REGISTRY[check_header(blob)]


def encrypt(plaintext: bytes | bytearray, keyring: Keyring, fmt: str = "A1",
            binding: bytes | None = None) -> bytes | bytearray:
    """``plaintext`` in format ``fmt``; A3 needs the attachment's ``binding`` (``a3.a3_binding``)."""
    if fmt not in REGISTRY:
        raise CryptoError(f"unknown encryption format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return REGISTRY[fmt].encrypt(plaintext, keyring, binding)


def decrypt(blob: bytes, keyring: Keyring, binding: bytes | None = None) -> bytes | bytearray:
    """Decrypts any format, dispatching on the version in the header (A3 needs its ``binding``)."""
    return format_of(blob).decrypt(blob, keyring, binding)
