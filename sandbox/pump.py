"""A small non-blocking I/O pump: write buffers to descriptors and feed what is read to callbacks.

One pump per execution, driven by the thread that runs it, so concurrent executions share nothing. A
descriptor may be both written and read (a socket). Writes to a peer that has gone away are dropped.
"""
from __future__ import annotations

import os
import selectors
from collections.abc import Callable


class Pump:
    def __init__(self) -> None:
        self.sel = selectors.PollSelector()    # a few descriptors, briefly: no epoll set to build
        self.out: dict[int, memoryview] = {}
        self.close_when_written: set[int] = set()
        self.readers: dict[int, Callable[[bytes], None]] = {}
        self.owned: set[int] = set()
        self.borrowed: set[int] = set()

    def own(self, *fds: int) -> None:
        """Descriptors this pump closes in `close()`; all are made non-blocking."""
        for fd in fds:
            os.set_blocking(fd, False)
            self.owned.add(fd)

    def borrow(self, fd: int) -> None:
        """A descriptor read through the pump but closed by its owner (left blocking: reads follow readiness)."""
        self.borrowed.add(fd)

    def write(self, fd: int, data: bytes, close_after: bool = False) -> None:
        if data:
            self.out[fd] = memoryview(data)
        if close_after:
            self.close_when_written.add(fd)
            if not data:
                self._close(fd)
                return
        self._update(fd)

    def read(self, fd: int, callback: Callable[[bytes], None]) -> None:
        """`callback(chunk)` for each chunk read, then `callback(b"")` once at end of file."""
        self.readers[fd] = callback
        self._update(fd)

    @property
    def reading(self) -> int:
        return len(self.readers)

    def poll(self, timeout: float) -> None:
        for key, events in self.sel.select(max(timeout, 0.0)):
            fd = key.fd
            if events & selectors.EVENT_READ and fd in self.readers:
                self._on_readable(fd)
            if events & selectors.EVENT_WRITE and fd in self.out:
                self._on_writable(fd)

    def _on_readable(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        callback = self.readers[fd]
        if not chunk:
            del self.readers[fd]
            self._update(fd)
        callback(chunk)

    def _on_writable(self, fd: int) -> None:
        try:
            n = os.write(fd, self.out[fd])
        except BlockingIOError:
            return
        except OSError:                       # the reader is gone: nothing more to deliver
            n = len(self.out[fd])
        rest = self.out[fd][n:]
        if rest:
            self.out[fd] = rest
            return
        del self.out[fd]
        if fd in self.close_when_written:
            self._close(fd)
        else:
            self._update(fd)

    def _update(self, fd: int) -> None:
        if fd not in self.owned and fd not in self.borrowed:
            return
        events = (selectors.EVENT_READ if fd in self.readers else 0) | \
                 (selectors.EVENT_WRITE if fd in self.out else 0)
        registered = fd in self.sel.get_map()
        if not events:
            if registered:
                self.sel.unregister(fd)
        elif registered:
            self.sel.modify(fd, events)
        else:
            self.sel.register(fd, events)

    def _close(self, fd: int) -> None:
        self.out.pop(fd, None)
        self.readers.pop(fd, None)
        if fd in self.sel.get_map():
            self.sel.unregister(fd)
        if fd in self.owned:
            self.owned.discard(fd)
            os.close(fd)
        self.borrowed.discard(fd)

    def close(self) -> None:
        for fd in list(self.owned | self.borrowed):
            self._close(fd)
        self.sel.close()
