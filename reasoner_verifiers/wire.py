"""The worker pool's wire format: length-prefixed JSON frames on pipes, never pickle.

The workers parse attacker-chosen text (the policy's answers) with large third-party parsers. Whatever a worker
sends back is therefore treated as untrusted input in the caller's process (the trainer): it is decoded as
plain JSON data, never unpickled (an unpickled reply runs code of the sender's choosing), is at most
`MAX_FRAME` bytes (a length header claiming gigabytes is refused before anything is allocated), and the
caller reads it incrementally under the task's deadline (a worker that sends half a frame and stalls cannot
hang the caller). Each request carries a sequence number that its reply must echo, so a reply sent ahead of
time cannot be taken as the answer to a later task. Tuples arrive as lists.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any

MAX_FRAME = 1 << 20  # bytes of JSON per frame; replies are a few hundred
_HEADER = struct.Struct(">I")


class FrameError(ValueError):
    """The peer broke the protocol: an oversized frame, or bytes that are not JSON."""


def encode(obj: Any) -> bytes:
    data = json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if len(data) > MAX_FRAME:
        raise FrameError(f"frame of {len(data)} bytes (limit {MAX_FRAME})")
    return _HEADER.pack(len(data)) + data


def write_frame(fd: int, obj: Any) -> None:
    """Write one frame, all of it (blocking)."""
    write_all(fd, encode(obj))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int) -> Any:
    """Read one frame (blocking); raises EOFError when the peer closed the pipe."""
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    if size > MAX_FRAME:
        raise FrameError(f"frame header claims {size} bytes (limit {MAX_FRAME})")
    return _decode(_read_exactly(fd, size))


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None


class FrameReader:
    """Incremental reader for the caller's side: `feed(bytes)` returns the frames completed so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        frames = []
        while len(self._buf) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise FrameError(f"frame header claims {size} bytes (limit {MAX_FRAME})")
            if len(self._buf) < _HEADER.size + size:
                break
            body = bytes(self._buf[_HEADER.size : _HEADER.size + size])
            del self._buf[: _HEADER.size + size]
            frames.append(_decode(body))
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not complete a frame yet."""
        return len(self._buf)
