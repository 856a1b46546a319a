"""Streaming readers of an image's canonical tar (``Store.open``/``AsyncStore.open``)."""

from __future__ import annotations

import io
from types import TracebackType
from typing import Optional, Type

from . import _native
from ._calls import await_call

__all__ = ["ImageReader", "AsyncImageReader"]


class ImageReader(io.RawIOBase):
    """A read-only binary file object streaming the canonical tar of an image (so
    ``tarfile.open(fileobj=reader, mode="r|")`` works without a temporary file). The
    bytes are checked against the image ID as they stream: the last read raises
    ``IntegrityError`` if they do not match."""

    def __init__(self, native: _native.ImageReader) -> None:
        super().__init__()
        self._native = native

    @property
    def size(self) -> int:
        """Size of the whole tar, in bytes."""
        return self._native.size

    def readable(self) -> bool:
        return True

    def read(self, size: Optional[int] = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for ``-1``); ``b""`` at the end.

        Ctrl-C (``KeyboardInterrupt``) during a read loses no byte: the reader stays open
        and the next read goes on at the first byte the interrupted one did not return,
        as with an interrupted read of a regular file."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self._native.read(-1 if size is None else size)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._native.close()
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ImageReader {state}, {self.size} bytes>"


class AsyncImageReader:
    """The async twin of ``ImageReader``: ``await reader.read(n)``, ``async with``."""

    def __init__(self, native: _native.ImageReader) -> None:
        self._native = native
        self.closed = False

    @property
    def size(self) -> int:
        """Size of the whole tar, in bytes."""
        return self._native.size

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for a negative size); ``b""`` at the end."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        data: bytes = await await_call(self._native.read_call(size), self._native.unread)
        return data

    def close(self) -> None:
        """Stops reading."""
        if not self.closed:
            self.closed = True
            self._native.close()

    async def __aenter__(self) -> "AsyncImageReader":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<AsyncImageReader {state}, {self.size} bytes>"
