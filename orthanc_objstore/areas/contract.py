"""Storage areas: what Orthanc sees. An area stores attachments by (uuid, content type).

``ObjectArea`` joins a store (keys → bytes) with a ``Naming`` (uuid + type → keys); it is the single
place where the legacy-name fallback happens. Cross-cutting layers that work per attachment rather
than per key (the hybrid router) implement the same ``Area`` protocol around other areas.

Contract: ``create`` stores the attachment and returns its ``Location``; ``read`` returns it whole;
``read_range`` returns exactly ``length`` bytes from ``start``;
``remove`` deletes it wherever it is, and removing a missing attachment is not an error;
``locate`` lists where it is now; ``cold_state`` says the storage class and restore state of the copy a read
would get, ``restore`` asks for a restore of it (``storage.Restorable``; ``restore_tiers`` lists the speeds,
empty when no storage of the area has cold classes). A ``read_range`` of the whole attachment (from 0,
``length`` equal to the size its location records) is a ``read``: Orthanc's v3 API asks for whole attachments
that way, and the read cache keeps whole reads only. ``ObjectArea`` gives the store the attachment as ``owner`` on every
write and read, so an object found under this attachment's key but written for another is refused
(``IntegrityError``, see ``storage.protocol``). Missing attachments raise ``NotFound``; any other failure another
``StoreError``.

``read``, ``read_range`` and ``remove`` accept ``location``: where ``create`` said the attachment
went (Orthanc keeps it as the attachment's custom data, see ``Location.to_custom_data``). It is a
hint, never the truth: an area tries it first and then searches as usual, so an attachment that was
moved since, or a hint that does not fit this area, still works. Hints naming another storage are
ignored.

Every area keeps its attachments in one of two storages, named as in ``/move-storage`` and in the
``storage`` field of a ``Location``: ``FILE_SYSTEM`` (Orthanc's StorageDirectory, the file-system side
of hybrid mode) and ``OBJECT_STORAGE`` (the provider's bucket or container). ``testing.area_conformance``
checks the contract; every area runs it.
"""

import json
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import NeedsRestore, NotFound
from ..storage.protocol import ColdState, Owner, Restorable, Store, cold_state
from .naming import Naming

FILE_SYSTEM = "file-system"
OBJECT_STORAGE = "object-storage"
STORAGE_NAMES = (FILE_SYSTEM, OBJECT_STORAGE)


@dataclass(frozen=True)
class Location:
    """Where one attachment currently is: which storage, under which key or path."""

    storage: str
    key: str
    description: str = ""
    size: int | None = field(default=None, compare=False)  # the attachment's size when written, if known
    adopted: bool = field(default=False, compare=False)  # the object is a reference to an adopted one (areas.adoption)

    _FORMAT = 1  # version of the custom-data format below

    def to_custom_data(self) -> bytes:
        """The attachment's custom data in Orthanc's index: small JSON naming the storage and key (and the
        size, since the read cache: readers of the format ignore what they do not know)."""
        value: dict = {"v": self._FORMAT, "storage": self.storage, "key": self.key}
        if self.size is not None:
            value["size"] = self.size
        if self.adopted:
            value["adopted"] = True
        return json.dumps(value, separators=(",", ":")).encode()

    @classmethod
    def from_custom_data(cls, data: bytes, uuid: str) -> "Location | None":
        """The location recorded by ``to_custom_data``; None for anything else.

        Attachments written through the v1 API, by Orthanc itself or by another plugin have no custom
        data (b"") or another format: they are found by their name as always. A key that does not end
        in a name made from this attachment's uuid is refused, so a damaged index cannot make a read
        return another attachment's object.
        """
        if not data or not data.startswith(b"{"):
            return None
        try:
            value = json.loads(data)
        except ValueError:
            return None
        if not isinstance(value, dict) or value.get("v") != cls._FORMAT:
            return None
        storage, key = value.get("storage"), value.get("key")
        if not isinstance(storage, str) or not isinstance(key, str) or not storage:
            return None
        if not key.rsplit("/", 1)[-1].startswith(uuid):
            return None
        size = value.get("size")
        return cls(storage, key, size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                   adopted=value.get("adopted") is True)


class Area(Protocol):
    """Attachments by (uuid, content type). See the module docstring for the contract."""

    def create(self, uuid: str, content_type: int, data: bytes) -> Location: ...

    def read(self, uuid: str, content_type: int, location: Location | None = None) -> bytes: ...

    def read_range(self, uuid: str, content_type: int, start: int, length: int,
                   location: Location | None = None) -> bytes: ...

    def remove(self, uuid: str, content_type: int, location: Location | None = None) -> None: ...

    def locate(self, uuid: str, content_type: int) -> list[Location]: ...

    @property
    def restore_tiers(self) -> tuple[str, ...]: ...

    def cold_state(self, uuid: str, content_type: int) -> ColdState: ...

    def restore(self, uuid: str, content_type: int, days: int, tier: str) -> ColdState: ...


class ObjectArea:
    """Attachments kept in one store under the names given by ``naming``."""

    def __init__(self, store: Store, naming: Naming, storage_name: str = OBJECT_STORAGE):
        self.store = store
        self.naming = naming
        self.storage_name = storage_name

    def __repr__(self) -> str:
        return f"ObjectArea({self.storage_name}, {self.store!r}, {self.naming.structure})"

    def create(self, uuid: str, content_type: int, data: bytes) -> Location:
        key = self.naming.key(uuid, content_type)
        self.store.put(key, data, owner=Owner(uuid, content_type))
        return Location(self.storage_name, key, size=len(data))

    def read(self, uuid: str, content_type: int, location: Location | None = None) -> bytes:
        owner = Owner(uuid, content_type)
        return self._first_found(self._keys(uuid, content_type, location),
                                 lambda key: self.store.get(key, owner=owner))

    def read_range(self, uuid: str, content_type: int, start: int, length: int,
                   location: Location | None = None) -> bytes:
        if start == 0 and location is not None and location.size == length and length > 0:
            return self.read(uuid, content_type, location)
        owner = Owner(uuid, content_type)
        return self._first_found(self._keys(uuid, content_type, location),
                                 lambda key: self.store.get_range(key, start, length, owner=owner))

    def remove(self, uuid: str, content_type: int, location: Location | None = None) -> None:
        for key in self.removal_keys(uuid, content_type, location):
            self.store.delete(key)

    def removal_keys(self, uuid: str, content_type: int, location: Location | None = None) -> list[str]:
        """Every key ``remove`` deletes: the recorded key (if it is this storage's), then the names."""
        return self._keys(uuid, content_type, location)

    def locate(self, uuid: str, content_type: int) -> list[Location]:
        found = []
        for key in self.naming.candidate_keys(uuid, content_type):
            try:
                self.store.head(key)
            except NotFound:
                continue
            except NeedsRestore:
                pass  # there, in a cold class (the encryption layer's head reads the header)
            found.append(Location(self.storage_name, key, self.store.describe(key)))
        return found

    @property
    def restore_tiers(self) -> tuple[str, ...]:
        return self.store.restore_tiers if isinstance(self.store, Restorable) else ()

    def cold_state(self, uuid: str, content_type: int) -> ColdState:
        return self._first_found(self.naming.candidate_keys(uuid, content_type),
                                 lambda key: cold_state(self.store, key))

    def restore(self, uuid: str, content_type: int, days: int, tier: str) -> ColdState:
        store = self.store
        if not isinstance(store, Restorable):
            return self.cold_state(uuid, content_type)
        return self._first_found(self.naming.candidate_keys(uuid, content_type),
                                 lambda key: store.restore(key, days, tier))

    def _keys(self, uuid, content_type, location):
        """The keys to try, in order: the recorded key (if it is this storage's), then the names."""
        keys = self.naming.candidate_keys(uuid, content_type)
        if location is not None and location.storage == self.storage_name and location.key not in keys:
            keys.insert(0, location.key)
        return keys

    @staticmethod
    def _first_found(keys, operation):
        """Applies ``operation`` to each key until one exists; else the first NotFound."""
        first_missing = None
        for key in keys:
            try:
                return operation(key)
            except NotFound as exc:
                first_missing = first_missing or exc
        raise first_missing
