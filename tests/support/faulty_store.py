"""FaultyStore: a memory store that fails the operations a test names, how and how often, and counts calls.

It replaces the one-off doubles the tests used to write (a store down for reads, one refusing the writes
of some keys, one that is flaky for deletes, one counting the bytes each read returned)::

    store = FaultyStore()
    store.fail("get", "get_range", "head")               # down for reads: StoreUnavailable naming the key
    store.fail("put", suffix=".dcm.head", error=error)   # only those keys, with that exception
    store.fail("delete", times=2)                        # the next two deletes fail, then they work
    store.heal()                                         # every fault cleared
    store.reads()                                        # [("get_range", 70), ...]: what reads returned
"""

import dataclasses
from collections.abc import Callable

from orthanc_objstore.errors import IntegrityError, StoreUnavailable
from orthanc_objstore.storage.protocol import Owner, check_range
from orthanc_objstore.storage.providers.memory import MemoryStore

OPERATIONS = ("put", "get", "get_range", "head", "delete")
READS = ("get", "get_range")


def down(key: str) -> Exception:
    """The default fault: the store cannot be reached."""
    return StoreUnavailable(f"the store is down (FaultyStore) for {key!r}", key)


@dataclasses.dataclass
class Fault:
    operations: frozenset[str]
    error: Exception | Callable[[str], Exception]
    suffix: str | None
    remaining: int | None  # None: every call

    def applies(self, operation: str, key: str) -> bool:
        return (operation in self.operations and (self.suffix is None or key.endswith(self.suffix))
                and (self.remaining is None or self.remaining > 0))


@dataclasses.dataclass(frozen=True)
class Call:
    operation: str
    key: str
    size: int | None  # bytes written or returned; None for head, delete and failed calls
    failed: bool


class FaultyStore(MemoryStore):
    """A ``MemoryStore`` whose operations fail on demand (see the module's docstring); every call is in ``calls``."""

    def __init__(self):
        super().__init__()
        self.faults: list[Fault] = []
        self.calls: list[Call] = []

    def fail(self, *operations: str, error: Exception | Callable[[str], Exception] = down,
             suffix: str | None = None, times: int | None = None) -> "FaultyStore":
        """Makes ``operations`` (names from OPERATIONS) raise ``error`` (an exception, or a function of the key
        returning one) for the keys ending in ``suffix`` (every key by default), ``times`` times (always by
        default). Returns the store, so that ``FaultyStore().fail("get")`` is a store down for reads."""
        unknown = sorted(set(operations) - set(OPERATIONS))
        if not operations or unknown:
            raise ValueError(f"FaultyStore.fail() takes operations among {', '.join(OPERATIONS)}, "
                             f"not {unknown or 'none'}")
        if times is not None and times < 1:
            raise ValueError(f"FaultyStore.fail(times=...) is a number of calls (1 or more) or None, not {times}")
        self.faults.append(Fault(frozenset(operations), error, suffix, times))
        return self

    def heal(self) -> None:
        """Clears every fault: the store works again."""
        self.faults.clear()

    def count(self, operation: str) -> int:
        """How many calls of ``operation`` were made (failed ones included)."""
        return sum(1 for call in self.calls if call.operation == operation)

    def reads(self) -> list[tuple[str, int | None]]:
        """(operation, bytes returned) of every successful get and get_range, in order."""
        return [(call.operation, call.size) for call in self.calls if call.operation in READS and not call.failed]

    def _enter(self, operation: str, key: str) -> None:
        for fault in self.faults:
            if fault.applies(operation, key):
                if fault.remaining is not None:
                    fault.remaining -= 1
                self.calls.append(Call(operation, key, None, True))
                error = fault.error
                raise error if isinstance(error, BaseException) else error(key)

    def put(self, key: str, data: bytes | bytearray, *, owner: Owner | None = None) -> None:
        self._enter("put", key)
        super().put(key, data, owner=owner)
        self.calls.append(Call("put", key, len(data), False))

    def get(self, key: str, *, owner: Owner | None = None) -> bytes:
        self._enter("get", key)
        data = super().get(key, owner=owner)
        self.calls.append(Call("get", key, len(data), False))
        return data

    def get_range(self, key: str, start: int, length: int, *, owner: Owner | None = None) -> bytes:
        self._enter("get_range", key)
        check_range(start, length)
        data = MemoryStore.get(self, key, owner=owner)  # not self.get: one call is counted once
        if start + length > len(data):
            self.calls.append(Call("get_range", key, None, True))
            raise IntegrityError(f"range {start}+{length} is past the end of {key!r} ({len(data)} bytes)", key)
        self.calls.append(Call("get_range", key, length, False))
        return data[start:start + length]

    def head(self, key: str) -> int:
        self._enter("head", key)
        size = len(MemoryStore.get(self, key))
        self.calls.append(Call("head", key, None, False))
        return size

    def delete(self, key: str) -> None:
        self._enter("delete", key)
        super().delete(key)
        self.calls.append(Call("delete", key, None, False))
