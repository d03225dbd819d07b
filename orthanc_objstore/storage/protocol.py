"""The store protocol: the five operations every provider and every wrapper implements.

A *store* maps keys (``str``, '/'-separated, never starting with '/') to immutable byte strings.
It knows nothing of Orthanc, uuids, content types, naming or encryption: those live above it
(``areas.naming``, ``areas.contract``) or around it (wrapper stores such as the encryption layer).

Contract, for every implementation:

``put(key, data, *, owner=None)``
    Stores ``data`` under ``key``, replacing any previous object. Atomic from a reader's point of
    view: a concurrent ``get`` sees the old object, the new one or ``NotFound``, never a prefix.
    On failure nothing readable is left under ``key`` that was not there before (providers whose
    SDK cannot promise this say so in their docstring).

``get(key, *, owner=None) -> bytes``
    The whole object, exactly as written. One request where the SDK allows it. Raises
    ``NotFound`` when the object does not exist; any other failure raises another ``StoreError``
    (a short or damaged body is ``IntegrityError`` or ``StoreUnavailable``, never returned).

``get_range(key, start, length, *, owner=None) -> bytes``
    Exactly ``length`` bytes starting at offset ``start``. A range reaching past the end of the
    object raises ``IntegrityError``; ``length == 0`` returns ``b""`` if the object exists.

``head(key) -> int``
    The size in bytes of the object; raises ``NotFound`` when it does not exist.

``delete(key)``
    Removes the object. Idempotent: deleting a missing object is not an error.

``owner`` (an ``Owner``: the attachment's uuid and content type) is optional everywhere. Given to
``put``, a store that keeps object metadata records it with the object (``Owner.metadata_value``);
given to ``get`` / ``get_range``, it checks the recorded owner on the same request that returns the
data and raises ``WrongOwner`` (an ``IntegrityError``) naming both attachments when they differ. An
object without the record (written by the official plugin, before this check, or without ``owner``)
reads as before; so does any read without ``owner`` (offline tools, tests). A store without metadata
(the file-system store) accepts ``owner`` and ignores it; wrappers pass it on (and may use it more:
the A3 encryption format authenticates it). Each store says which it does: ``records_owner`` (True:
metadata recorded and checked, a mismatch names both attachments) and ``binds_owner`` (True: the
object's bytes are bound to their owner, a mismatch fails authentication); see ``owner_checks``.

Implementations are shared by all of Orthanc's threads at once: they must be thread-safe and must
not hold a lock across network I/O. ``describe(key)`` returns a human-readable location for logs
and the "where is my file" route (for example ``s3://bucket/key``); it never contains a secret.

Providers with a bucket or container also implement ``StartupCheck``; every operation of theirs on a
missing bucket raises ``BucketNotFound``, never ``NotFound``.

Providers with storage classes that must be restored before a read (S3 GLACIER and DEEP_ARCHIVE,
Azure Archive) implement ``Restorable``: ``cold_state(key)`` says the object's class and restore state,
``restore(key, days, tier)`` asks for a restore. Their reads of an object not yet restored raise
``NeedsRestore`` (never ``NotFound``). ``cold_state(store, key)`` below answers for any store.

Stores whose service deletes many objects in one request also implement ``BatchDelete``
(``delete_batch``: S3 ``DeleteObjects``, Azure blob batch, GCS batch requests); ``delete_keys`` is the
free function that uses it when present and falls back to one ``delete`` per key otherwise.

Conveniences built on the protocol are free functions below; they are never overridden.
``read_exact_range`` is the part of ``get_range`` that every provider shares.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import (
    IntegrityError,
    NotFound,
    OwnerlessObject,
    PermissionDenied,
    StoreError,
    StoreUnavailable,
    WrongOwner,
)

# Restore states of ``ColdState.restore``
NOT_NEEDED = "not-needed"      # the class is readable at once (STANDARD, GLACIER_IR, Hot, Cool, ...)
NOT_RESTORED = "not-restored"  # a cold class, no restore asked for (or the last one expired)
IN_PROGRESS = "in-progress"    # a restore was asked for and is running
RESTORED = "restored"          # a cold class with a readable restored copy (S3: until ``expiry``)

OWNER_METADATA = "orthanc-attachment"  # the metadata name (Azure: "orthanc_attachment", see OWNER_METADATA_AZURE)
OWNER_METADATA_AZURE = OWNER_METADATA.replace("-", "_")  # Azure metadata names must be C# identifiers


OWNER_MARK = ".orthanc-objstore-owners-since"  # under RootPath: its Last-Modified is when owners began to be recorded
OWNER_MARK_TEXT = (b"orthanc-objstore records the owner of every object it writes since this object's "
                   b"Last-Modified; objects without an owner record modified later are refused "
                   b"(option OwnerlessObjects). Do not delete.\n")
OWNERLESS_ACCEPT_BEFORE_MARK = "AcceptBeforeMark"  # the default: objects without a record, older than the mark
OWNERLESS_ACCEPT = "Accept"                        # every object without a record (a fleet with the official plugin)
OWNERLESS_REFUSE = "Refuse"                        # none (every object stamped by verify --deep --stamp)
OWNERLESS_POLICIES = (OWNERLESS_ACCEPT_BEFORE_MARK, OWNERLESS_ACCEPT, OWNERLESS_REFUSE)


@dataclass(frozen=True)
class Owner:
    """The attachment an object belongs to: Orthanc's uuid and content type (never the key or path, so
    RootPath, StorageStructure and moves between storages do not change it)."""

    uuid: str
    content_type: int

    def metadata_value(self) -> str:
        """The recorded form, ``uuid:content_type`` (ASCII, fits every provider's metadata)."""
        return f"{self.uuid}:{self.content_type}"

    def __str__(self) -> str:
        return f"attachment {self.uuid} of type {self.content_type}"


def owner_checks(store) -> tuple[bool, bool]:
    """(records_owner, binds_owner) of a store; a store that says nothing does neither."""
    return bool(getattr(store, "records_owner", False)), bool(getattr(store, "binds_owner", False))


def check_owner(key: str, owner: "Owner | None", recorded: str | None, where: str,
                modified=None, owners_since=None) -> None:
    """Refuses an object whose recorded owner (``recorded``, the metadata value or None) is not ``owner``.

    Nothing to check without ``owner``. A record that is not ours is refused too: this name is written by
    this plugin only. An object without a record is refused when it was modified (``modified``, the
    server's Last-Modified of this very answer) after ``owners_since`` (the server's Last-Modified of the
    RootPath's OWNER_MARK, or ``datetime.min`` under OwnerlessObjects Refuse): since then every write of
    the plugin records its owner, so bare bytes under this name were put there by something else (a
    restore from a backup without metadata, a copy script). Both times come from the server's clock."""
    if owner is None or recorded == owner.metadata_value():
        return
    if recorded is None:
        # Last-Modified has a resolution of one second: an object of the mark's own second is refused (only
        # a writer without owner records, i.e. a fleet with the official plugin, can write then: Accept)
        if owners_since is None or (modified is not None and modified < owners_since):
            return
        when = f"modified {modified.isoformat()}" if modified is not None else "of unknown age"
        raise OwnerlessObject(f"{where} read of {key!r} for {owner}: the object has no owner record and was {when}, "
                         f"after this storage began recording owners ({_since(owners_since)}); it may be another "
                         "attachment's data restored or copied without its metadata, so it is refused. If it is "
                         "right: 'orthanc-objstore verify --deep --stamp' compares it with the MD5 in Orthanc's "
                         "index and records its owner; or set \"OwnerlessObjects\": \"Accept\"", key)
    uuid, _, content_type = recorded.rpartition(":")
    recorded_name = f"attachment {uuid} of type {content_type}" if uuid else f"an unreadable owner {recorded[:80]!r}"
    raise WrongOwner(f"{where} read of {key!r}: the object was written for {recorded_name}, not for {owner}; "
                         "refusing to return another attachment's data (objects moved or copied inside the "
                         "bucket?)", key)


@runtime_checkable
class OwnerMarking(Protocol):
    """Stores that refuse ownerless objects newer than an owner mark (S3, Azure, GCS): ``owners_since`` (a
    datetime or None) is set at start-up from ``mark_owners(key)``, the server's time of the mark (S3, Azure:
    its Last-Modified; GCS: its timeCreated), created there when missing, create-only."""

    owners_since: Any

    def mark_owners(self, key: str) -> Any: ...


@runtime_checkable
class OwnerStamping(Protocol):
    """Stores that record an owner on an existing object without its bytes (``verify --deep --stamp``).

    ``object_version(key)`` is an opaque token of the object as it is now (S3, Azure: ETag; GCS: generation);
    ``stamp_owner(key, owner, version)`` records ``owner`` only if the object is still that version, else
    raises ``StoreError``: a caller takes the version, proves the bytes, then stamps, so an object replaced
    in between is never stamped."""

    def object_version(self, key: str) -> str: ...

    def stamp_owner(self, key: str, owner: Owner, version: str) -> None: ...


def owner_scope(store) -> str:
    """What ``store``'s owner checks accept of objects without a record, as a string that changes with
    OwnerlessObjects and the owner mark: a cache that outlives a start-up (the read cache's disk entries)
    serves an entry only under the checks it was read with. "" for a store without a mark."""
    if not isinstance(store, OwnerMarking):
        return ""
    since = store.owners_since
    return "ownerless accepted" if since is None else f"ownerless refused from {since.isoformat()}"


def _since(owners_since) -> str:
    return "OwnerlessObjects is Refuse" if owners_since.year == 1 else f"{OWNER_MARK} of {owners_since.isoformat()}"


@runtime_checkable
class Store(Protocol):
    """A key → bytes object store. See the module docstring for the contract."""

    def put(self, key: str, data: bytes | bytearray, *, owner: Owner | None = None) -> None: ...

    def get(self, key: str, *, owner: Owner | None = None) -> bytes: ...

    def get_range(self, key: str, start: int, length: int, *, owner: Owner | None = None) -> bytes: ...

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


@runtime_checkable
class Listing(Protocol):
    """A store that lists its objects with their sizes in a few requests (S3); the offline tools use it
    instead of one HEAD per object. Not part of the store protocol: wrappers do not pass it on."""

    def list_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(key, stored size) of every object whose key starts with ``prefix``."""


@dataclass(frozen=True)
class ColdState:
    """An object's storage class (the provider's name; "" when the store has none) and restore state."""

    storage_class: str = ""
    restore: str = NOT_NEEDED
    expiry: str = ""  # S3: when a restored copy goes back to the cold class (its HTTP date)

    @property
    def readable(self) -> bool:
        return self.restore in (NOT_NEEDED, RESTORED)


@runtime_checkable
class Restorable(Protocol):
    """A store with storage classes that must be restored before reads (S3 Glacier, Azure Archive)."""

    @property
    def restore_tiers(self) -> tuple[str, ...]:
        """The restore speeds ``restore`` accepts (S3: Standard, Bulk, Expedited; Azure: Standard, High)."""

    def cold_state(self, key: str) -> ColdState:
        """The object's class and restore state; ``NotFound`` when it does not exist."""

    def restore(self, key: str, days: int, tier: str) -> ColdState:
        """Asks for a restore of an object that needs one (``days``: how long the restored copy stays,
        where the provider keeps it for a time; ``tier``: one of ``restore_tiers``). An object already
        readable, or already being restored, is not touched. Returns the state after the request."""


def restore_tiers(store: Store) -> tuple[str, ...]:
    """``store.restore_tiers`` for a ``Restorable`` store; else none (nothing there needs a restore)."""
    return store.restore_tiers if isinstance(store, Restorable) else ()


def request_restore(store: Store, key: str, days: int, tier: str) -> ColdState:
    """``store.restore(...)`` for a ``Restorable`` store; else the object is readable as it is (``cold_state``)."""
    if isinstance(store, Restorable):
        return store.restore(key, days, tier)
    return cold_state(store, key)


def cold_state(store: Store, key: str) -> ColdState:
    """``store.cold_state(key)`` for a ``Restorable`` store; else the object is readable as it is (its
    existence checked: ``NotFound`` when missing)."""
    if isinstance(store, Restorable):
        return store.cold_state(key)
    store.head(key)
    return ColdState()


@runtime_checkable
class BatchDelete(Protocol):
    """A store that deletes many objects in one request (the deferred deletions' drainer uses it)."""

    max_batch: int
    """The most keys one ``delete_batch`` call sends in one request (the service's limit)."""

    def delete_batch(self, keys: Sequence[str]) -> dict[str, StoreError]:
        """Deletes ``keys`` (at most ``max_batch``), as ``delete`` would each: a missing object is deleted.
        Returns the keys that could not be deleted, each with its error (empty: all deleted). Raises a
        ``StoreError`` when the whole request failed (nothing is known to be deleted)."""


def batch_failures(keys: Sequence[str], statuses: Sequence[int | None], provider: str,
                   item: str) -> dict[str, StoreError]:
    """The keys of one batch delete that were not deleted, from the HTTP statuses of its sub-answers, in the
    keys' order (None: no status). A missing object (404) counts as deleted; a key beyond the last
    sub-answer got no answer. ``provider`` and ``item`` name them in the messages ("Azure", "blob")."""
    failed: dict[str, StoreError] = {}
    for key, status in zip(keys, statuses, strict=False):
        if status is not None and (200 <= status < 300 or status == 404):
            continue
        where = f"{provider} batch delete of {key!r}"
        if status in (401, 403):
            failed[key] = PermissionDenied(f"{where}: access denied ({status})", key)
        elif status is None or status >= 500 or status in (408, 429):
            failed[key] = StoreUnavailable(f"{where}: the server kept failing ({status})", key)
        else:
            failed[key] = StoreError(f"{where}: {status}", key)
    for key in keys[len(statuses):]:
        failed[key] = StoreUnavailable(f"{provider} batch delete of {key!r}: no answer for this {item}", key)
    return failed


def batch_size(store: Store) -> int:
    """How many keys ``store`` deletes in one request: its ``max_batch`` when it has ``BatchDelete``, else 1."""
    return max(1, int(store.max_batch)) if isinstance(store, BatchDelete) else 1


def delete_keys(store: Store, keys: Sequence[str]) -> dict[str, StoreError]:
    """Deletes ``keys`` from ``store``: in batches of ``max_batch`` where the store has ``BatchDelete``,
    else one ``delete`` per key. Returns the keys not deleted with their errors; a batch whose whole
    request failed counts each of its keys as failed with that error."""
    failed: dict[str, StoreError] = {}
    if isinstance(store, BatchDelete):
        size = batch_size(store)
        for first in range(0, len(keys), size):
            chunk = keys[first:first + size]
            try:
                failed.update(store.delete_batch(chunk))
            except StoreError as exc:
                failed.update(dict.fromkeys(chunk, exc))
        return failed
    for key in keys:
        try:
            store.delete(key)
        except NotFound:
            pass
        except StoreError as exc:
            failed[key] = exc
    return failed


@runtime_checkable
class RetryCounting(Protocol):
    """A store whose SDK retries failed requests and says so (S3); the metrics count those retries."""

    def count_retries(self, on_retry: Callable[[], None]) -> None:
        """Calls ``on_retry()`` for every request the SDK sends again after a failure."""


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
