"""MaxConcurrentInputSize: a byte-counting semaphore bounding the bytes being encrypted or decrypted at once."""

import threading
from contextlib import contextmanager


class InputTooLarge(Exception):
    """An input is larger than MaxConcurrentInputSize: it could never be processed."""


class ByteBudget:
    """A byte-counting semaphore: MaxConcurrentInputSize. Python integers: no overflow at 4096 MB or beyond.

    ``hold(n)`` waits until ``n`` bytes fit in the budget and keeps them for the ``with`` block; an input
    larger than the whole budget can never fit and raises ``InputTooLarge`` at once.
    """

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("the byte budget must be positive")
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
