"""Random-access byte sources: parsers read through these, so they never touch the OS themselves."""

from __future__ import annotations

from typing import Protocol


class ByteSource(Protocol):
    """Anything that can hand out byte ranges of one file-like object.

    `read` returns fewer bytes than asked for at end of data, never raises for a range past the end.
    """

    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class BytesSource:
    """A ByteSource over bytes already in memory (tests, embedded blobs)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._data = bytes(data)
        self.size = len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        return self._data[offset : offset + length]
