"""Client-side encryption formats A1 (the official plugin's, byte for byte) and A2 (ours), pure functions.

This module knows bytes and keys only: no store, no Orthanc, no configuration. It raises its own
exceptions (``DecryptionError``, ``UnknownMasterKey``, ``InputTooLarge``); the encryption wrapper
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

All formats are at least 86 bytes long. ``ByteBudget`` is the MaxConcurrentInputSize semaphore.
"""

import os
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

FORMATS = ("A1", "A2", "A3")
KEY_SIZE = 32
TAG_SIZE = 16
KEY_ID_SIZE = 4
HEADER_SIZE = 70  # both formats: the authenticated prefix before the ciphertext
MIN_OBJECT_SIZE = HEADER_SIZE + TAG_SIZE  # 86: an encrypted empty plaintext, in either format

A1_IV_SIZE = 32
A1_OVERHEAD = HEADER_SIZE + TAG_SIZE

A2_CHUNK_SIZE = 64 * 1024
A2_MAX_CHUNK_SIZE = 1 << 30
A2_WRAPPED_KEY_SIZE = KEY_SIZE + 8
A2_NONCE_SIZE = 12
_A2_HEADER = struct.Struct("<2sIIQ40s12s")
assert _A2_HEADER.size == HEADER_SIZE

_STREAM_STEP = 1024 * 1024  # A1 is one GCM message, processed in steps (update_into: no temporary buffers)
# update_into wants its output block size - 1 bytes longer than its input with cryptography < 42 (AES: 15)
_SPARE = 15


class CryptoError(ValueError):
    """Base of this module's errors; messages never contain key material."""


class DecryptionError(CryptoError):
    """The bytes are not a valid encrypted object: damaged, tampered with, truncated or extended."""


class UnknownMasterKey(DecryptionError):
    """The object names a master key id that is not among the configured keys."""

    def __init__(self, key_id: int, known_ids):
        self.key_id = key_id
        known = ", ".join(str(i) for i in sorted(known_ids)) or "none"
        super().__init__(f"it was encrypted with master key id {key_id} (hex '{official_key_id_hex(key_id)}' in "
                         f"the official plugin's message), which is not configured (configured ids: {known}); "
                         "add that key to PreviousMasterKeys")


class InputTooLarge(CryptoError):
    """An input is larger than MaxConcurrentInputSize: it could never be processed."""


def official_key_id_hex(key_id: int) -> str:
    """The id as the official plugin prints it: hex of the 4 header bytes (id 7 -> '07000000')."""
    return struct.pack("<I", key_id).hex()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def a1_keystream(master_key: bytes) -> bytes:
    """KS[0:32]: AES-256-CTR of the master key from an all-zero counter block, as the official plugin."""
    encryptor = Cipher(algorithms.AES(master_key), modes.CTR(b"\0" * 16)).encryptor()
    return encryptor.update(b"\0" * 32) + encryptor.finalize()


class Keyring:
    """The current master key (used to encrypt) and every key usable to decrypt, by id."""

    def __init__(self, current_id: int, current_key: bytes, previous=()):
        _check_key(current_key)
        self.current_id = current_id
        self.current_key = current_key
        self._keys = {}
        for key_id, key in previous:
            _check_key(key)
            self._keys[key_id] = key
        self._keys[current_id] = current_key  # the current key wins, as in the official plugin
        self._keystreams: dict = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Keyring(current id {self.current_id}, ids {sorted(self._keys)})"

    def key(self, key_id: int) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise UnknownMasterKey(key_id, self._keys) from None

    def a1_keystream(self, key_id: int) -> bytes:
        with self._lock:
            stream = self._keystreams.get(key_id)
        if stream is None:
            stream = a1_keystream(self.key(key_id))
            with self._lock:
                self._keystreams[key_id] = stream
        return stream


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise CryptoError(f"a master key must be exactly {KEY_SIZE} bytes")


def _check_key_id(key_id: int) -> None:
    if not 0 <= key_id <= 0xFFFFFFFF:
        raise CryptoError(f"a master key id must be an integer from 0 to {0xFFFFFFFF}, got {key_id}")


# --- A1 -----------------------------------------------------------------------------------------------

def encrypt_a1(plaintext: bytes | bytearray, key_id: int, master_key: bytes, *, iv: bytes | None = None,
               dek: bytes | None = None, keystream: bytes | None = None) -> bytearray:
    """The official plugin's format. ``iv``/``dek`` are fresh random values unless given (test vectors).

    Encrypts into one preallocated buffer (no other whole-object copy) and returns it."""
    _check_key_id(key_id)
    iv = os.urandom(A1_IV_SIZE) if iv is None else iv
    dek = os.urandom(KEY_SIZE) if dek is None else dek
    keystream = keystream or a1_keystream(master_key)
    prefix = b"A1" + struct.pack("<I", key_id) + _xor(iv, keystream) + _xor(dek, keystream)
    encryptor = Cipher(algorithms.AES(dek), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(prefix)
    size = len(plaintext)
    blob = bytearray(HEADER_SIZE + size + TAG_SIZE)  # the one output buffer: header, ciphertext, tag
    blob[:HEADER_SIZE] = prefix
    with memoryview(plaintext) as source, memoryview(blob) as target:
        for offset in range(0, size, _STREAM_STEP):
            step = source[offset:offset + _STREAM_STEP]
            # the slice reaches into the tag's 16 bytes: cryptography < 42 wants block size - 1 spare bytes
            start = HEADER_SIZE + offset
            encryptor.update_into(step, target[start:start + len(step) + TAG_SIZE])
    encryptor.finalize()
    blob[HEADER_SIZE + size:] = encryptor.tag
    return blob


def decrypt_a1(blob: bytes, keyring: Keyring) -> bytearray:
    """The plaintext, decrypted into one new buffer (``bytes(...)`` of it is the caller's one copy)."""
    _check_header(blob, "A1")
    key_id = struct.unpack_from("<I", blob, 2)[0]
    keystream = keyring.a1_keystream(key_id)
    if len(blob) < A1_OVERHEAD:
        raise DecryptionError(f"it is {len(blob)} bytes long, shorter than the {A1_OVERHEAD} bytes of any "
                              "A1 object (truncated)")
    iv = _xor(blob[6:38], keystream)
    dek = _xor(blob[38:70], keystream)
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
    output = bytearray(size + _SPARE)
    with memoryview(output) as target:
        for offset in range(0, size, _STREAM_STEP):
            step = body[offset:offset + _STREAM_STEP]
            decryptor.update_into(step, target[offset:offset + len(step) + _SPARE])
    del output[size:]  # a minor shrink: CPython keeps the buffer, nothing is copied
    return output


def _check_header(blob: bytes, expected: str | None = None) -> str:
    """The official plugin's checks, in its order: a header, a known version, a key id."""
    if len(blob) < 2:
        raise DecryptionError("no header found (the object is shorter than 2 bytes)")
    version = bytes(blob[:2])
    if version not in (b"A1", b"A2", b"A3") or (expected and version.decode() != expected):
        raise DecryptionError(f"version {version!r} is not supported (known: A1, A2, A3): not an encrypted object "
                              "or a damaged header")
    if len(blob) < 2 + KEY_ID_SIZE:
        raise DecryptionError("no master key id found (the object is shorter than 6 bytes)")
    return version.decode()


# --- A2 -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class A2Header:
    """A parsed A2 header (not yet authenticated: authentication happens with the first chunk)."""

    raw: bytes
    key_id: int
    chunk_size: int
    plaintext_size: int
    wrapped_key: bytes
    nonce: bytes

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
    _check_header(header, "A2")
    if len(header) < HEADER_SIZE:
        raise DecryptionError(f"it is {len(header)} bytes long, shorter than the {MIN_OBJECT_SIZE} bytes of any "
                              "A2 object (truncated)")
    _, key_id, chunk_size, plaintext_size, wrapped, nonce = _A2_HEADER.unpack_from(header)
    if not 1 <= chunk_size <= A2_MAX_CHUNK_SIZE:
        raise DecryptionError(f"its A2 header gives an invalid chunk size {chunk_size} (damaged header)")
    return A2Header(bytes(header[:HEADER_SIZE]), key_id, chunk_size, plaintext_size, wrapped, nonce)


def _chunk_nonce(base: bytes, index: int) -> bytes:
    return (int.from_bytes(base, "big") ^ index).to_bytes(A2_NONCE_SIZE, "big")


def _chunk_aad(header_raw: bytes, index: int, last: bool) -> bytes:
    return header_raw + struct.pack("<QB", index, 1 if last else 0)


def encrypt_a2(plaintext: bytes | bytearray, key_id: int, master_key: bytes, *, chunk_size: int = A2_CHUNK_SIZE,
               dek: bytes | None = None, nonce: bytes | None = None) -> bytearray:
    """Encrypts into one preallocated buffer (no other whole-object copy) and returns it."""
    _check_key_id(key_id)
    if not 1 <= chunk_size <= A2_MAX_CHUNK_SIZE:
        raise CryptoError(f"the A2 chunk size must be from 1 to {A2_MAX_CHUNK_SIZE}")
    dek = os.urandom(KEY_SIZE) if dek is None else dek
    nonce = os.urandom(A2_NONCE_SIZE) if nonce is None else nonce
    header = _A2_HEADER.pack(b"A2", key_id, chunk_size, len(plaintext), aes_key_wrap(master_key, dek), nonce)
    parsed = parse_a2_header(header)
    count = parsed.chunk_count
    blob = bytearray(parsed.object_size)  # the one output buffer: header, then each chunk and its tag
    blob[:HEADER_SIZE] = header
    aead = AESGCM(dek)  # one key schedule for all chunks
    with memoryview(plaintext) as source, memoryview(blob) as target:
        position = HEADER_SIZE
        for index in range(count):
            chunk = bytes(source[index * chunk_size:(index + 1) * chunk_size])  # cryptography < 39 wants bytes
            sealed = aead.encrypt(_chunk_nonce(nonce, index), chunk, _chunk_aad(header, index, index == count - 1))
            target[position:position + len(sealed)] = sealed  # chunk-sized temporaries only
            position += len(sealed)
    return blob


def unwrap_a2_key(header: A2Header, keyring: Keyring) -> bytes:
    try:
        return aes_key_unwrap(keyring.key(header.key_id), header.wrapped_key)
    except InvalidUnwrap:
        raise DecryptionError(f"its A2 wrapped data key does not unwrap under master key id {header.key_id}: "
                              "the header was tampered with, or that id names another key") from None


def decrypt_a2_chunks(header: A2Header, dek: bytes, first_index: int, stored: bytes | memoryview) -> bytearray:
    """Decrypts consecutive stored chunks starting at chunk ``first_index`` (as given by ``chunk_span``)
    into one new buffer (nothing else of the object's size is allocated)."""
    stored_chunk = header.chunk_size + TAG_SIZE
    count = header.chunk_count
    chunks = -(-len(stored) // stored_chunk)
    if first_index + chunks > count:
        raise DecryptionError("it holds more A2 chunks than its header says (extended)")
    if chunks and len(stored) - (chunks - 1) * stored_chunk < TAG_SIZE:
        raise DecryptionError(f"A2 chunk {first_index + chunks - 1} of {count} fails authentication (master key "
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
                raise DecryptionError(f"A2 chunk {index} of {count} fails authentication (master key id "
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


# --- both ---------------------------------------------------------------------------------------------

def version_of(blob: bytes) -> str:
    """'A1', 'A2' or 'A3' from the first bytes of an object; ``DecryptionError`` otherwise."""
    return _check_header(blob)


def encrypt(plaintext: bytes | bytearray, keyring: Keyring, fmt: str = "A1",
            binding: bytes | None = None) -> bytes | bytearray:
    """``plaintext`` in format ``fmt``; A3 needs the attachment's ``binding`` (``a3_binding``)."""
    if fmt == "A3":
        from . import crypto_a3  # it builds on this module
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
        from . import crypto_a3  # it builds on this module
        return crypto_a3.decrypt_a3(blob, keyring, binding)
    return decrypt_a1(blob, keyring) if version_of(blob) == "A1" else decrypt_a2(blob, keyring)


def a1_plaintext_size(object_size: int) -> int:
    if object_size < A1_OVERHEAD:
        raise DecryptionError(f"it is {object_size} bytes long, shorter than the {A1_OVERHEAD} bytes of any "
                              "A1 object (truncated)")
    return object_size - A1_OVERHEAD


class ByteBudget:
    """A byte-counting semaphore: MaxConcurrentInputSize. Python integers: no overflow at 4096 MB or beyond.

    ``hold(n)`` waits until ``n`` bytes fit in the budget and keeps them for the ``with`` block; an input
    larger than the whole budget can never fit and raises ``InputTooLarge`` at once.
    """

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise CryptoError("the byte budget must be positive")
        self.capacity = capacity
        self.in_use = 0
        self.waiting = 0
        self._condition = threading.Condition()

    @contextmanager
    def hold(self, size: int, action: str = "process"):
        if size > self.capacity:
            raise InputTooLarge(f"it is too large to {action}: {size} bytes, more than MaxConcurrentInputSize "
                                f"({self.capacity // (1024 * 1024)} MB); increase MaxConcurrentInputSize")
        with self._condition:
            self.waiting += 1
            try:
                self._condition.wait_for(lambda: self.in_use + size <= self.capacity)
            finally:
                self.waiting -= 1
            self.in_use += size
        try:
            yield
        finally:
            with self._condition:
                self.in_use -= size
                self._condition.notify_all()
