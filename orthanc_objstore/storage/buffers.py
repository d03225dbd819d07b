"""A read-only, seekable file over a bytes-like buffer, so that SDKs wanting bytes or a file never copy it whole.

The encryption layer hands the providers its one output buffer (a ``bytearray``); the SDKs accept
``bytes`` or a file object, and ``io.BytesIO(bytearray)`` would copy the whole object. ``BufferReader``
gives the SDK a file whose ``read(n)`` copies only the ``n`` bytes asked for (one part, one block).
"""

import io


class BufferReader(io.RawIOBase):
    """``data`` (any bytes-like object) as a binary file, read-only and seekable, without copying it."""

    def __init__(self, data):
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence!r}; allowed: 0 (start), 1 (current), 2 (end)")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def read(self, size: int = -1) -> bytes:
        self._check_open()
        end = len(self._view) if size is None or size < 0 else min(self._position + size, len(self._view))
        chunk = bytes(self._view[self._position:end]) if end > self._position else b""
        self._position = max(self._position, end)
        return chunk

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, target) -> int:
        self._check_open()
        with memoryview(target).cast("B") as out:
            count = max(0, min(len(out), len(self._view) - self._position))
            out[:count] = self._view[self._position:self._position + count]
        self._position += count
        return count

    def close(self) -> None:
        if not self.closed:
            self._view.release()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed BufferReader")


def as_file(data):
    """``data`` as a binary file: ``io.BytesIO`` for ``bytes`` (it shares the object), else a ``BufferReader``."""
    return io.BytesIO(data) if isinstance(data, bytes) else BufferReader(data)
