"""Encryption, the parts every format shares: sizes, errors, the keyring, the header check.

Pure functions and values (no store, no Orthanc); the formats are ``a1``, ``a2``, ``a3``,
and ``formats`` dispatches between them.
"""

import struct
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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
A2_HEADER_LAYOUT = struct.Struct("<2sIIQ40s12s")
assert A2_HEADER_LAYOUT.size == HEADER_SIZE

STREAM_STEP = 1024 * 1024  # A1 is one GCM message, processed in steps (update_into: no temporary buffers)
# update_into wants its output block size - 1 bytes longer than its input with cryptography < 42 (AES: 15)
SPARE_BYTES = 15


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


def official_key_id_hex(key_id: int) -> str:
    """The id as the official plugin prints it: hex of the 4 header bytes (id 7 -> '07000000')."""
    return struct.pack("<I", key_id).hex()


def xor(a: bytes, b: bytes) -> bytes:
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


def check_key_id(key_id: int) -> None:
    if not 0 <= key_id <= 0xFFFFFFFF:
        raise CryptoError(f"a master key id must be an integer from 0 to {0xFFFFFFFF}, got {key_id}")


def check_header(blob: bytes, expected: str | None = None) -> str:
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


def header_key_id(blob: bytes) -> int:
    """The master key id an object's header names (every format keeps it in bytes 2..6)."""
    check_header(blob)
    return struct.unpack_from("<I", blob, 2)[0]
