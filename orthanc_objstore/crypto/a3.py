"""Format A3 (this plugin only): A2 with the attachment (uuid and content type) bound into the authenticated data.

The same 70-byte header layout as A2 (``formats``) with version b"A3"; every chunk's AAD is::

    header[0:70] || binding || uint64le(i) || uint8(i == n-1)
    binding = a3_binding(uuid, content_type) = uint16le(len(uuid)) || uuid (UTF-8) || uint32le(content type)

The binding is not stored: decrypting needs the attachment, and an object read for any other attachment
(another uuid, or the same uuid with another content type) fails authentication. It names neither the
object's key nor its path, so RootPath, StorageStructure and moves between storages keep working. Sizes,
chunking and range reads are A2's. Pure functions; ``formats.encrypt``/``decrypt`` dispatch here (``A3``).
"""

import dataclasses
import struct
from collections.abc import Callable

from .a2 import A2Header, decrypt_a2_chunks, encrypt_chunked, parse_chunked_header, unwrap_a2_key
from .keys import A2_CHUNK_SIZE, HEADER_SIZE, CryptoError, DecryptionError, Keyring, check_header


def a3_binding(uuid: str, content_type: int) -> bytes:
    """The attachment as A3 authenticates it (see the module docstring)."""
    encoded = uuid.encode("utf-8")
    if len(encoded) > 0xFFFF or not 0 <= content_type <= 0xFFFFFFFF:
        raise CryptoError("an A3 binding needs a uuid of at most 65535 bytes and a content type from 0 to 2^32-1")
    return struct.pack("<H", len(encoded)) + encoded + struct.pack("<I", content_type)


def encrypt_a3(plaintext: bytes | bytearray, keyring: Keyring, binding: bytes | None,
               *, chunk_size: int = A2_CHUNK_SIZE,
               dek: bytes | None = None, nonce: bytes | None = None) -> bytearray:
    """``plaintext`` as A3 under the current master key, bound to the attachment ``binding`` names (A2's
    chunked envelope, into one buffer)."""
    if binding is None:
        raise CryptoError("format A3 binds the object to its attachment: a binding is needed to encrypt")
    return encrypt_chunked(plaintext, keyring.current_id, keyring.current_key, "A3", binding,
                           chunk_size=chunk_size, dek=dek, nonce=nonce)


def parse_a3_header(header: bytes, binding: bytes | None) -> A2Header:
    """An A3 header as an ``A2Header`` whose ``raw`` is the AAD prefix (header || binding), so that
    ``chunk_span``, ``unwrap_a2_key`` and ``decrypt_a2_chunks`` serve both formats. ``binding`` None (a
    read that does not say for which attachment) cannot decrypt A3."""
    check_header(header, "A3")
    if binding is None:
        raise DecryptionError("it is an A3 object, bound to its attachment: it can only be decrypted by a read "
                              "that names the attachment (uuid and content type)")
    parsed = parse_chunked_header(header, "A3")
    return dataclasses.replace(parsed, raw=parsed.raw + binding)


def decrypt_a3_chunks(header: A2Header, dek: bytes, first_index: int, stored: bytes | memoryview) -> bytes | bytearray:
    """``decrypt_a2_chunks`` for an A3 header (from ``parse_a3_header``), saying what a failure means."""
    try:
        return decrypt_a2_chunks(header, dek, first_index, stored)
    except DecryptionError as exc:
        raise DecryptionError(f"{exc}; an A3 object also fails so when it was written for another "
                              "attachment") from None


def decrypt_a3(blob: bytes, keyring: Keyring, binding: bytes | None) -> bytes | bytearray:
    header = parse_a3_header(blob, binding)
    dek = unwrap_a2_key(header, keyring)
    if len(blob) != header.object_size:
        raise DecryptionError(f"it is {len(blob)} bytes long but its A3 header announces {header.object_size} "
                              "bytes (truncated or extended)")
    return decrypt_a3_chunks(header, dek, 0, memoryview(blob)[HEADER_SIZE:])


class A3:
    """Format A3 as the registry (``formats.Format``) sees it: chunked, range-readable, bound to its attachment."""

    name = "A3"
    ranges = True

    def encrypt(self, plaintext: bytes | bytearray, keyring: Keyring, binding: bytes | None) -> bytes | bytearray:
        return encrypt_a3(plaintext, keyring, binding)

    def decrypt(self, blob: bytes, keyring: Keyring, binding: bytes | None) -> bytes | bytearray:
        return decrypt_a3(blob, keyring, binding)

    def plaintext_size(self, header: bytes, object_size: Callable[[], int]) -> int:
        return parse_chunked_header(header, "A3").plaintext_size  # the binding is not needed to read the size

    def parse_header(self, header: bytes, binding: bytes | None) -> A2Header:
        return parse_a3_header(header, binding)

    def unwrap_key(self, header: A2Header, keyring: Keyring) -> bytes:
        return unwrap_a2_key(header, keyring)

    def decrypt_chunks(self, header: A2Header, dek: bytes, first_index: int,
                       stored: bytes | memoryview) -> bytes | bytearray:
        return decrypt_a3_chunks(header, dek, first_index, stored)
