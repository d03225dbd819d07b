"""Format A2, this plugin's chunked envelope (layout in ``formats``): wrapped data key, authenticated chunks."""

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .keys import (
    A2_CHUNK_SIZE,
    A2_HEADER_LAYOUT,
    A2_MAX_CHUNK_SIZE,
    A2_NONCE_SIZE,
    HEADER_SIZE,
    KEY_SIZE,
    MIN_OBJECT_SIZE,
    TAG_SIZE,
    CryptoError,
    DecryptionError,
    Keyring,
    check_header,
    check_key_id,
)


@dataclass(frozen=True)
class A2Header:
    """A parsed A2 or A3 header (not yet authenticated: authentication happens with the first chunk).

    ``raw`` is what every chunk authenticates before its index: the header, and for A3 the binding."""

    raw: bytes
    key_id: int
    chunk_size: int
    plaintext_size: int
    wrapped_key: bytes
    nonce: bytes
    version: str = "A2"

    @property
    def chunk_count(self) -> int:
        return max(1, -(-self.plaintext_size // self.chunk_size))

    @property
    def object_size(self) -> int:
        return HEADER_SIZE + self.plaintext_size + TAG_SIZE * self.chunk_count

    def chunk_span(self, start: int, length: int) -> tuple[int, int, int]:
        """(first chunk index, stored offset, stored length) of the chunks holding plaintext[start:start+length]."""
        if length == 0 or start + length > self.plaintext_size:
            raise ValueError("empty or out-of-bounds span")
        first, last = start // self.chunk_size, (start + length - 1) // self.chunk_size
        stored_chunk = self.chunk_size + TAG_SIZE
        offset = HEADER_SIZE + first * stored_chunk
        end = min(HEADER_SIZE + (last + 1) * stored_chunk, self.object_size)
        return first, offset, end - offset


def parse_a2_header(header: bytes) -> A2Header:
    return parse_chunked_header(header, "A2")


def parse_chunked_header(header: bytes, version: str) -> A2Header:
    """The 70-byte header A2 and A3 share, checked to be of ``version``."""
    check_header(header, version)
    if len(header) < HEADER_SIZE:
        raise DecryptionError(f"it is {len(header)} bytes long, shorter than the {MIN_OBJECT_SIZE} bytes of any "
                              f"{version} object (truncated)")
    _, key_id, chunk_size, plaintext_size, wrapped, nonce = A2_HEADER_LAYOUT.unpack_from(header)
    if not 1 <= chunk_size <= A2_MAX_CHUNK_SIZE:
        raise DecryptionError(f"its {version} header gives an invalid chunk size {chunk_size} (damaged header)")
    return A2Header(bytes(header[:HEADER_SIZE]), key_id, chunk_size, plaintext_size, wrapped, nonce, version)


def _chunk_nonce(base: bytes, index: int) -> bytes:
    return (int.from_bytes(base, "big") ^ index).to_bytes(A2_NONCE_SIZE, "big")


def _chunk_aad(header_raw: bytes, index: int, last: bool) -> bytes:
    return header_raw + struct.pack("<QB", index, 1 if last else 0)


def encrypt_a2(plaintext: bytes | bytearray, key_id: int, master_key: bytes, *, chunk_size: int = A2_CHUNK_SIZE,
               dek: bytes | None = None, nonce: bytes | None = None) -> bytearray:
    """Encrypts into one preallocated buffer (no other whole-object copy) and returns it."""
    return encrypt_chunked(plaintext, key_id, master_key, "A2", b"", chunk_size=chunk_size, dek=dek, nonce=nonce)


def encrypt_chunked(plaintext: bytes | bytearray, key_id: int, master_key: bytes, version: str, binding: bytes, *,
                    chunk_size: int, dek: bytes | None, nonce: bytes | None) -> bytearray:
    """The chunked envelope of A2 and A3 (which authenticates ``binding`` after the header in every chunk)."""
    check_key_id(key_id)
    if not 1 <= chunk_size <= A2_MAX_CHUNK_SIZE:
        raise CryptoError(f"the {version} chunk size must be from 1 to {A2_MAX_CHUNK_SIZE}")
    dek = os.urandom(KEY_SIZE) if dek is None else dek
    nonce = os.urandom(A2_NONCE_SIZE) if nonce is None else nonce
    wrapped = aes_key_wrap(master_key, dek)
    header = A2_HEADER_LAYOUT.pack(version.encode(), key_id, chunk_size, len(plaintext), wrapped, nonce)
    layout = A2Header(header + binding, key_id, chunk_size, len(plaintext), wrapped, nonce, version)  # raw: AAD prefix
    count = layout.chunk_count
    blob = bytearray(layout.object_size)  # the one output buffer: header, then each chunk and its tag
    blob[:HEADER_SIZE] = header
    aead = AESGCM(dek)  # one key schedule for all chunks
    with memoryview(plaintext) as source, memoryview(blob) as target:
        position = HEADER_SIZE
        for index in range(count):
            chunk = bytes(source[index * chunk_size:(index + 1) * chunk_size])  # cryptography < 39 wants bytes
            sealed = aead.encrypt(_chunk_nonce(nonce, index), chunk, _chunk_aad(layout.raw, index, index == count - 1))
            target[position:position + len(sealed)] = sealed  # chunk-sized temporaries only
            position += len(sealed)
    return blob


def unwrap_a2_key(header: A2Header, keyring: Keyring) -> bytes:
    try:
        return aes_key_unwrap(keyring.key(header.key_id), header.wrapped_key)
    except InvalidUnwrap:
        raise DecryptionError(f"its {header.version} wrapped data key does not unwrap under master key id "
                              f"{header.key_id}: "
                              "the header was tampered with, or that id names another key") from None


def decrypt_a2_chunks(header: A2Header, dek: bytes, first_index: int, stored: bytes | memoryview) -> bytearray:
    """Decrypts consecutive stored chunks starting at chunk ``first_index`` (as given by ``chunk_span``)
    into one new buffer (nothing else of the object's size is allocated)."""
    stored_chunk = header.chunk_size + TAG_SIZE
    count = header.chunk_count
    chunks = -(-len(stored) // stored_chunk)
    if first_index + chunks > count:
        raise DecryptionError(f"it holds more {header.version} chunks than its header says (extended)")
    if chunks and len(stored) - (chunks - 1) * stored_chunk < TAG_SIZE:
        raise DecryptionError(f"{header.version} chunk {first_index + chunks - 1} of {count} fails authentication "
                              f"(master key "
                              f"id {header.key_id}): the object was tampered with, truncated or reordered")
    size = len(stored) - TAG_SIZE * chunks
    output = bytearray(size)
    aead = AESGCM(dek)  # one key schedule for all chunks
    with memoryview(stored) as source, memoryview(output) as target:
        written = 0
        for number, offset in enumerate(range(0, len(stored), stored_chunk)):
            index = first_index + number
            piece = bytes(source[offset:offset + stored_chunk])  # cryptography < 39 wants bytes
            try:
                opened = aead.decrypt(_chunk_nonce(header.nonce, index), piece,
                                      _chunk_aad(header.raw, index, index == count - 1))
            except InvalidTag:
                raise DecryptionError(f"{header.version} chunk {index} of {count} fails authentication (master key id "
                                      f"{header.key_id}): the object was tampered with, truncated or "
                                      "reordered") from None
            target[written:written + len(opened)] = opened  # chunk-sized temporaries only
            written += len(opened)
    return output


def decrypt_a2(blob: bytes, keyring: Keyring) -> bytearray:
    header = parse_a2_header(blob)
    dek = unwrap_a2_key(header, keyring)
    if len(blob) != header.object_size:
        raise DecryptionError(f"it is {len(blob)} bytes long but its A2 header announces {header.object_size} "
                              "bytes (truncated or extended)")
    with memoryview(blob) as view:
        return decrypt_a2_chunks(header, dek, 0, view[HEADER_SIZE:])


class A2:
    """Format A2 as the registry (``formats.Format``) sees it: chunked, so ranges decrypt chunk by chunk."""

    name = "A2"
    ranges = True

    def encrypt(self, plaintext: bytes | bytearray, keyring: Keyring, binding: bytes | None) -> bytes | bytearray:
        return encrypt_a2(plaintext, keyring.current_id, keyring.current_key)

    def decrypt(self, blob: bytes, keyring: Keyring, binding: bytes | None) -> bytes | bytearray:
        return decrypt_a2(blob, keyring)

    def plaintext_size(self, header: bytes, object_size: Callable[[], int]) -> int:
        return parse_a2_header(header).plaintext_size

    def parse_header(self, header: bytes, binding: bytes | None) -> A2Header:
        return parse_a2_header(header)

    def unwrap_key(self, header: A2Header, keyring: Keyring) -> bytes:
        return unwrap_a2_key(header, keyring)

    def decrypt_chunks(self, header: A2Header, dek: bytes, first_index: int,
                       stored: bytes | memoryview) -> bytes | bytearray:
        return decrypt_a2_chunks(header, dek, first_index, stored)
