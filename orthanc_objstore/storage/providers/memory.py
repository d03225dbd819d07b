"""An in-memory store: the reference implementation of the protocol (owner metadata included), for tests."""

import threading

from ...errors import IntegrityError, NotFound
from ..protocol import Owner, check_owner, check_range


class MemoryStore:
    """Objects in a dict owned by this instance (never shared between instances)."""
    records_owner = True  # see store.owner_checks

    def __init__(self):
        self._objects: dict[str, bytes] = {}
        self._owners: dict[str, str] = {}  # key -> Owner.metadata_value(), as a provider's object metadata
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._objects)} objects)"

    def put(self, key: str, data: bytes | bytearray, *, owner: Owner | None = None) -> None:
        with self._lock:
            self._objects[key] = bytes(data)
            if owner is None:
                self._owners.pop(key, None)
            else:
                self._owners[key] = owner.metadata_value()

    def get(self, key: str, *, owner: Owner | None = None) -> bytes:
        with self._lock:
            try:
                data, recorded = self._objects[key], self._owners.get(key)
            except KeyError:
                raise NotFound(f"no object {key!r}", key) from None
        check_owner(key, owner, recorded, "memory")
        return data

    def get_range(self, key: str, start: int, length: int, *, owner: Owner | None = None) -> bytes:
        check_range(start, length)
        data = self.get(key, owner=owner)
        if start + length > len(data):
            raise IntegrityError(f"range {start}+{length} is past the end of {key!r} ({len(data)} bytes)", key)
        return data[start:start + length]

    def head(self, key: str) -> int:
        return len(self.get(key))

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)
            self._owners.pop(key, None)

    def describe(self, key: str) -> str:
        return f"memory:{key}"

    def recorded_owner(self, key: str) -> str | None:
        """The owner metadata of ``key``, as recorded (for tests)."""
        with self._lock:
            return self._owners.get(key)

    def swap(self, first: str, second: str) -> None:
        """Exchanges two objects with their metadata, as a copy script inside a bucket would (for tests)."""
        with self._lock:
            tables: tuple[dict, ...] = (self._objects, self._owners)
            for table in tables:
                a, b = table.pop(first, None), table.pop(second, None)
                if b is not None:
                    table[first] = b
                if a is not None:
                    table[second] = a

    def keys(self) -> list[str]:
        """Every key, sorted (for tests)."""
        with self._lock:
            return sorted(self._objects)
