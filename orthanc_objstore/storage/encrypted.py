"""The encryption wrapper store: encrypts on put, decrypts on get, around any store (SPEC ENC-1..7).

``EncryptedStore(inner, keyring, format, budget)`` implements the whole store protocol (see ``protocol``) on
plaintext, keeping objects in ``inner`` in format A1, A2 or A3 (``crypto.formats`` gives them byte by byte):

- ``put`` encrypts in ``format`` (A1, A2 or A3) under the keyring's current master key.
- ``get`` decrypts either format, whatever the configured one, choosing the master key by the id in
  the object's header among the current and previous keys (key rotation).
- ``get_range``: an A1 object is one GCM message, so it is read and decrypted whole, then sliced.
  An A2 object is read in two requests: its 70-byte header, then only the 64 KiB chunks that hold
  the range (each authenticated on its own). With ``Format: A1`` configured, ranges are read whole
  in one request (A2 objects included); with ``A2`` the header is read first (A1 objects then cost a
  second, whole read). A range read authenticates what it returns; bytes appended after the last
  chunk of an A2 object are only detected by a whole ``get``.
- ``head`` cannot tell the plaintext size from the object size alone, because the two formats have
  different overheads: it reads the 70-byte header (one small ranged read). For A2 the header holds
  the plaintext size (not authenticated by ``head``; ``get`` checks it); for A1 it adds ``inner.head``
  (size - 86).
- ``delete`` and ``describe`` delegate; so do ``cold_state`` and ``restore`` (``protocol.Restorable``: a
  storage class is the inner store's business; an inner store without classes reads as not cold).
- ``owner`` (see ``protocol``) is passed on to ``inner`` (which records and checks it as metadata) and,
  for A3, bound into the authenticated data: ``put`` with ``Format: A3`` writes A3 for its owner (A2
  when called without one: nothing to bind), and an A3 object can only be read with its owner. A3
  is read like A2 (header, then chunks).

Every decryption failure is an ``IntegrityError`` naming the object's key (which contains the uuid);
an unknown master key id is an ``UnknownKeyError`` saying which id is missing. MaxConcurrentInputSize
bounds the bytes being encrypted or decrypted at once (``budget.ByteBudget``); the ciphertext is not
counted while it travels to or from the store. No message contains key material. This module knows
neither the configuration nor Orthanc: ``build`` makes the keyring and the budget from them.
"""

from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from ..crypto import a3 as crypto_a3
from ..crypto import formats as crypto
from ..crypto.keys import KEY_ID_SIZE, header_key_id
from ..errors import IntegrityError, StoreError, UnknownKeyError, WrongOwner
from .budget import ByteBudget, InputTooLarge
from .protocol import (
    ColdState,
    Owner,
    Store,
    batch_size,
    check_range,
    cold_state,
    delete_keys,
    owner_checks,
    request_restore,
    restore_tiers,
)


@runtime_checkable
class KeyRotation(Store, Protocol):
    """A store whose objects are encrypted under master keys that rotate (``re-encrypt`` uses it)."""

    def is_current(self, key: str) -> bool:
        """True when the object is in the format ``put`` writes, under the current master key (one small
        ranged read of its header)."""


class EncryptedStore:
    """``inner`` holding encrypted objects, seen as a store of plaintext objects; also ``KeyRotation``."""

    def __init__(self, inner: Store, keyring: crypto.Keyring, format: str = "A2", budget: ByteBudget | None = None):
        """``format`` is what ``put`` writes (``get`` reads every format). ``budget`` bounds the bytes being
        encrypted or decrypted at once; stores that share one (both sides of hybrid mode) share
        MaxConcurrentInputSize. Without one, nothing is bounded."""
        if format not in crypto.FORMATS:
            raise ValueError(f"unknown encryption format {format!r}; allowed: {', '.join(crypto.FORMATS)}")
        self.inner = inner
        self.format = format
        self.keyring = keyring
        self.budget = budget or ByteBudget(1 << 62)

    @property
    def records_owner(self) -> bool:
        return owner_checks(self.inner)[0]

    @property
    def binds_owner(self) -> bool:
        """True when new objects are A3 (older A1/A2 objects are only checked by ``inner``'s metadata)."""
        return self.format == "A3"

    def __repr__(self) -> str:
        return f"EncryptedStore({self.inner!r}, format {self.format}, master key id {self.keyring.current_id})"

    def put(self, key: str, data: bytes | bytearray, *, owner: Owner | None = None) -> None:
        with _translated(key, "encrypt"), self.budget.hold(len(data), "encrypt"):
            fmt = "A2" if self.format == "A3" and owner is None else self.format  # A3 needs an owner to bind
            blob = crypto.encrypt(data, self.keyring, fmt, _binding(owner))
        self.inner.put(key, blob, owner=owner)

    def get(self, key: str, *, owner: Owner | None = None) -> bytes:
        blob = self.inner.get(key, owner=owner)
        with _translated(key, "decrypt"), self.budget.hold(len(blob), "decrypt"):
            plaintext = crypto.decrypt(blob, self.keyring, _binding(owner))
            del blob  # the ciphertext is freed before the plaintext's one copy into the bytes Orthanc takes
            return _as_bytes(plaintext)

    def get_range(self, key: str, start: int, length: int, *, owner: Owner | None = None) -> bytes:
        check_range(start, length)
        if self.format == "A1":
            return _slice(key, self.get(key, owner=owner), start, length)
        header = self._read_header(key, owner)
        with _translated(key, "decrypt"):
            fmt = crypto.format_of(header)
            if not fmt.ranges:
                return _slice(key, self.get(key, owner=owner), start, length)
            parsed = fmt.parse_header(header, _binding(owner))
            _check_inside(key, parsed.plaintext_size, start, length)
            data_key = fmt.unwrap_key(parsed, self.keyring)
            if length == 0:
                return b""
            first, offset, stored_length = parsed.chunk_span(start, length)
        try:
            stored = self.inner.get_range(key, offset, stored_length, owner=owner)
        except WrongOwner:
            raise
        except IntegrityError as exc:
            raise IntegrityError(f"cannot decrypt {key!r}: it is shorter than its {fmt.name} header announces "
                                 "(truncated)", key) from exc
        with _translated(key, "decrypt"), self.budget.hold(len(stored), "decrypt"):
            plaintext = fmt.decrypt_chunks(parsed, data_key, first, stored)
        skip = start - first * parsed.chunk_size
        with memoryview(plaintext) as view:
            return bytes(view[skip:skip + length])

    def head(self, key: str) -> int:
        header = self._read_header(key)
        with _translated(key, "decrypt"):
            return crypto.format_of(header).plaintext_size(header, lambda: self.inner.head(key))

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def is_current(self, key: str) -> bool:
        header = self.inner.get_range(key, 0, 2 + KEY_ID_SIZE)
        with _translated(key, "decrypt"):
            return crypto.version_of(header) == self.format and header_key_id(header) == self.keyring.current_id

    @property
    def max_batch(self) -> int:
        """The inner store's batch size (``BatchDelete``); 1 when it deletes one object per request."""
        return batch_size(self.inner)

    def delete_batch(self, keys) -> dict[str, StoreError]:
        """Deletes pass through unchanged (keys already carry ``.enc``), in the inner store's batches."""
        return delete_keys(self.inner, keys)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)

    @property
    def restore_tiers(self) -> tuple[str, ...]:
        return restore_tiers(self.inner)

    def cold_state(self, key: str) -> ColdState:
        return cold_state(self.inner, key)

    def restore(self, key: str, days: int, tier: str) -> ColdState:
        return request_restore(self.inner, key, days, tier)

    def _read_header(self, key: str, owner: Owner | None = None) -> bytes:
        try:
            return self.inner.get_range(key, 0, crypto.HEADER_SIZE, owner=owner)
        except WrongOwner:
            raise
        except IntegrityError as exc:
            raise IntegrityError(f"cannot decrypt {key!r}: it is shorter than {crypto.MIN_OBJECT_SIZE} bytes, the "
                                 "size of any encrypted object (truncated, or not encrypted)", key) from exc


def _binding(owner: Owner | None) -> bytes | None:
    return None if owner is None else crypto_a3.a3_binding(owner.uuid, owner.content_type)


@contextmanager
def _translated(key: str, action: str):
    """``crypto``'s errors → the plugin's error vocabulary, naming the object."""
    try:
        yield
    except crypto.UnknownMasterKey as exc:
        raise UnknownKeyError(f"cannot decrypt {key!r}: {exc}", key) from None
    except crypto.DecryptionError as exc:
        raise IntegrityError(f"cannot decrypt {key!r}: {exc}", key) from None
    except (crypto.CryptoError, InputTooLarge) as exc:
        raise StoreError(f"cannot {action} {key!r}: {exc}", key) from None


def _check_inside(key: str, size: int, start: int, length: int) -> None:
    if start + length > size:
        raise IntegrityError(f"range {start}+{length} is past the end of {key!r} ({size} bytes decrypted)", key)


def _as_bytes(data) -> bytes:
    """``data`` as the ``bytes`` Orthanc's read callback must return: one copy of a buffer, none of bytes."""
    return data if isinstance(data, bytes) else bytes(data)


def _slice(key: str, plaintext: bytes, start: int, length: int) -> bytes:
    _check_inside(key, len(plaintext), start, length)
    return plaintext[start:start + length]
