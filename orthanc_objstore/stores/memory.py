"""An in-memory store: the reference implementation of the protocol, for tests and wrappers."""

import threading

from ..errors import IntegrityError, NotFound
from ..store import check_range


class MemoryStore:
    """Objects in a dict owned by this instance (never shared between instances)."""

    def __init__(self):
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._objects)} objects)"

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._objects[key] = bytes(data)

    def get(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise NotFound(f"no object {key!r}", key) from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        data = self.get(key)
        if start + length > len(data):
            raise IntegrityError(f"range {start}+{length} is past the end of {key!r} ({len(data)} bytes)", key)
        return data[start:start + length]

    def head(self, key: str) -> int:
        return len(self.get(key))

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def describe(self, key: str) -> str:
        return f"memory:{key}"

    def keys(self) -> list[str]:
        """Every key, sorted (for tests)."""
        with self._lock:
            return sorted(self._objects)
