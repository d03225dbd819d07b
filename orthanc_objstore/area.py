"""Storage areas: what Orthanc sees. An area stores attachments by (uuid, content type).

``ObjectArea`` joins a store (keys → bytes) with a ``Naming`` (uuid + type → keys); it is the single
place where the legacy-name fallback happens. Cross-cutting layers that work per attachment rather
than per key (the hybrid router) implement the same ``Area`` protocol around other areas.

Contract: ``create`` stores the attachment; ``read`` returns it whole; ``read_range`` returns exactly
``length`` bytes from ``start``; ``remove`` deletes it wherever it is, and removing a missing
attachment is not an error; ``size`` returns the stored size; ``locate`` lists where it is now.
Missing attachments raise ``NotFound``; any other failure another ``StoreError``.
"""

from dataclasses import dataclass
from typing import Protocol

from .errors import NotFound
from .naming import Naming
from .store import Store


@dataclass(frozen=True)
class Location:
    """Where one attachment currently is: which storage, under which key or path."""

    storage: str
    key: str
    description: str


class Area(Protocol):
    def create(self, uuid: str, content_type: int, data: bytes) -> None: ...

    def read(self, uuid: str, content_type: int) -> bytes: ...

    def read_range(self, uuid: str, content_type: int, start: int, length: int) -> bytes: ...

    def remove(self, uuid: str, content_type: int) -> None: ...

    def locate(self, uuid: str, content_type: int) -> list[Location]: ...


class ObjectArea:
    """Attachments kept in one store under the names given by ``naming``."""

    def __init__(self, store: Store, naming: Naming, storage_name: str = "object-storage"):
        self.store = store
        self.naming = naming
        self.storage_name = storage_name

    def __repr__(self) -> str:
        return f"ObjectArea({self.storage_name}, {self.store!r}, {self.naming.structure})"

    def create(self, uuid: str, content_type: int, data: bytes) -> None:
        self.store.put(self.naming.key(uuid, content_type), data)

    def read(self, uuid: str, content_type: int) -> bytes:
        return self._first_found(uuid, content_type, self.store.get)

    def read_range(self, uuid: str, content_type: int, start: int, length: int) -> bytes:
        return self._first_found(uuid, content_type, lambda key: self.store.get_range(key, start, length))

    def remove(self, uuid: str, content_type: int) -> None:
        for key in self.naming.candidate_keys(uuid, content_type):
            self.store.delete(key)

    def locate(self, uuid: str, content_type: int) -> list[Location]:
        found = []
        for key in self.naming.candidate_keys(uuid, content_type):
            try:
                self.store.head(key)
            except NotFound:
                continue
            found.append(Location(self.storage_name, key, self.store.describe(key)))
        return found

    def _first_found(self, uuid, content_type, operation):
        """Applies ``operation`` to each candidate key until one exists; else the first NotFound."""
        first_missing = None
        for key in self.naming.candidate_keys(uuid, content_type):
            try:
                return operation(key)
            except NotFound as exc:
                first_missing = first_missing or exc
        raise first_missing
