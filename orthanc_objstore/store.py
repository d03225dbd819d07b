"""The store protocol: the five operations every provider and every wrapper implements.

A *store* maps keys (``str``, '/'-separated, never starting with '/') to immutable byte strings.
It knows nothing of Orthanc, uuids, content types, naming or encryption: those live above it
(``naming``, ``area``) or around it (wrapper stores such as the encryption layer).

Contract, for every implementation:

``put(key, data)``
    Stores ``data`` under ``key``, replacing any previous object. Atomic from a reader's point of
    view: a concurrent ``get`` sees the old object, the new one or ``NotFound``, never a prefix.
    On failure nothing readable is left under ``key`` that was not there before (providers whose
    SDK cannot promise this say so in their docstring).

``get(key) -> bytes``
    The whole object, exactly as written. One request where the SDK allows it. Raises
    ``NotFound`` when the object does not exist; any other failure raises another ``StoreError``
    (a short or damaged body is ``IntegrityError`` or ``StoreUnavailable``, never returned).

``get_range(key, start, length) -> bytes``
    Exactly ``length`` bytes starting at offset ``start``. A range reaching past the end of the
    object raises ``IntegrityError``; ``length == 0`` returns ``b""`` if the object exists.

``head(key) -> int``
    The size in bytes of the object; raises ``NotFound`` when it does not exist.

``delete(key)``
    Removes the object. Idempotent: deleting a missing object is not an error.

Implementations are shared by all of Orthanc's threads at once: they must be thread-safe and must
not hold a lock across network I/O. ``describe(key)`` returns a human-readable location for logs
and the "where is my file" route (for example ``s3://bucket/key``); it never contains a secret.

Providers with a bucket or container also implement ``StartupCheck``; every operation of theirs on a
missing bucket raises ``BucketNotFound``, never ``NotFound``.

Conveniences built on the protocol are free functions below; they are never overridden.
``read_exact_range`` is the part of ``get_range`` that every provider shares.
"""

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .errors import IntegrityError, NotFound, StoreError


@runtime_checkable
class Store(Protocol):
    """A key → bytes object store. See the module docstring for the contract."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def head(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def describe(self, key: str) -> str: ...


PROTOCOL_METHODS = ("put", "get", "get_range", "head", "delete", "describe")


@runtime_checkable
class StartupCheck(Protocol):
    """A store whose bucket/container can be checked once at start-up (the cloud providers)."""

    def check_bucket(self) -> None:
        """Returns when the bucket/container exists (Azure creates it here when allowed to). Raises
        ``BucketNotFound`` when it does not exist, any other ``StoreError`` when it cannot tell."""


def exists(store: Store, key: str) -> bool:
    """True when ``key`` exists in ``store``; errors other than ``NotFound`` propagate."""
    try:
        store.head(key)
    except NotFound:
        return False
    return True


def exact_range(data: bytes, key: str, length: int, where: str) -> bytes:
    """``data`` if a range read returned exactly ``length`` bytes; else the range went past the end of
    the object: IntegrityError (never a short result passed on as success)."""
    if len(data) != length:
        raise IntegrityError(f"{where} range read of {key!r}: {len(data)} bytes instead of {length} "
                             "(range past the end of the object)", key)
    return data


def read_exact_range(key: str, start: int, length: int, *, fetch: Callable[[], bytes],
                     head: Callable[[str], int], sdk_errors: tuple[type[Exception], ...],
                     translate: Callable[[Exception, str, str], StoreError], where: str) -> bytes:
    """``get_range`` for a provider: the range checked, ``length == 0`` answered by ``head`` (the object
    must exist), else ``fetch()`` (one ranged request of the SDK), its ``sdk_errors`` translated, and
    a result shorter than ``length`` refused (``exact_range``)."""
    check_range(start, length)
    if length == 0:
        head(key)
        return b""
    try:
        data = fetch()
    except sdk_errors as exc:
        raise translate(exc, key, "range read") from exc
    return exact_range(data, key, length, where)


def check_range(start: int, length: int) -> None:
    """Refuses negative offsets and lengths (a programming error, not a store error)."""
    if start < 0 or length < 0:
        raise ValueError(f"invalid range: start={start}, length={length}")
