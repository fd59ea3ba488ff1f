"""Exit statuses and resource use of a run, carried to the supervisor without entering the zygote's heap.

Why: every solution process is forked from the zygote, so whatever the zygote's Python heap holds, freed but
not erased, the next program can read in its own memory. The zygote used to turn each run's exit code,
peak memory and CPU time into Python numbers and a JSON report: found this session, the exit status and the
peak memory (in KiB) of one program were readable, as the report's JSON text, in the next program's memory
(some 20 bits a run, chosen by the program). Now `wait4` fills preallocated ctypes buffers; the zygote
reads only the one-byte exit code and signal number (small integers, which CPython preallocates, so they
allocate nothing), copies the rest byte for byte into a fixed *board* that goes after the report's JSON, and
zeroes the buffers once the report is sent. The supervisor decodes the board (`decode`).

Layout: one 56-byte slot per role ("solution", "tester"): kind (1 = rusage, 2 = CPU seconds from the
long-lived tester) as a little-endian u64; then either user time, system time (two struct timeval) and
ru_maxrss, or one double; at offset 48 the raw wait status (int32). The report's JSON says only whether
each process ended on its own (`own_exit`).
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct

ROLES = ("solution", "tester")
SLOT = 56
SIZE = SLOT * len(ROLES)
SEPARATOR = b"\0"                      # JSON never holds a raw NUL: the board starts after the first one
TESTER_REPORT = struct.Struct("<Bd")   # what the long-lived tester sends per run: exit code, CPU seconds
_WNOHANG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class _Rusage(ctypes.Structure):
    _fields_ = [("utime", ctypes.c_long * 2), ("stime", ctypes.c_long * 2), ("maxrss", ctypes.c_long),
                ("rest", ctypes.c_long * 13)]


_STATUS = ctypes.c_int(0)
_RUSAGE = _Rusage()
_BOARD = ctypes.create_string_buffer(SIZE)
_TESTER = ctypes.create_string_buffer(64)
_BYTES = ctypes.cast(ctypes.byref(_STATUS), ctypes.POINTER(ctypes.c_ubyte))
_KIND_RUSAGE = struct.pack("<Q", 1)
_KIND_TESTER = struct.pack("<Q", 2)
_EXIT_STATUS = [struct.pack("<i", code << 8) for code in range(4)]


def _status(own_exit: bool) -> dict:
    """code / signal from the wait status's two low bytes (small ints: nothing is allocated for them)."""
    low, high = _BYTES[0], _BYTES[1]
    sig = low & 0x7F
    if sig == 0:
        return {"own_exit": own_exit, "code": high, "signal": None}
    return {"own_exit": own_exit, "code": None, "signal": sig if sig != 0x7F else None}


def wait4(pid: int, own_exit: bool, role: str) -> dict:
    """Reap `pid`; its exit code / signal as a dict, its rusage copied into `role`'s slot of the board."""
    while _libc.wait4(pid, ctypes.byref(_STATUS), 0, ctypes.byref(_RUSAGE)) != pid:
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise ChildProcessError(err, "wait4")
    out = _status(own_exit)
    base = ctypes.addressof(_BOARD) + SLOT * ROLES.index(role)
    ctypes.memmove(base, _KIND_RUSAGE, 8)
    ctypes.memmove(base + 8, ctypes.addressof(_RUSAGE), 40)    # utime, stime, maxrss
    ctypes.memmove(base + 48, ctypes.addressof(_STATUS), 4)
    ctypes.memset(ctypes.addressof(_RUSAGE), 0, ctypes.sizeof(_RUSAGE))
    _STATUS.value = 0
    return out


def reap_any() -> int:
    """waitpid(-1, WNOHANG) whose status never becomes a Python object: the pid, 0, or -1 (no children)."""
    return _libc.waitpid(-1, ctypes.byref(_STATUS), _WNOHANG)


def tester_report(sock) -> dict:
    """The long-lived tester's end-of-run message (TESTER_REPORT), as a wait status; its CPU time goes to
    the board. A missing or short message is exit code 3 (a sandbox fault)."""
    try:
        n = sock.recv_into(_TESTER)
    except OSError:
        n = 0
    code = _TESTER[0][0] if n == TESTER_REPORT.size else 3
    base = ctypes.addressof(_BOARD) + SLOT * ROLES.index("tester")
    if n == TESTER_REPORT.size:
        ctypes.memmove(base, _KIND_TESTER, 8)
        ctypes.memmove(base + 8, ctypes.addressof(_TESTER) + 1, 8)
    ctypes.memmove(base + 48, _EXIT_STATUS[min(code, 3)], 4)   # the tester's own codes: 0 or 3
    ctypes.memset(_TESTER, 0, 64)
    return {"own_exit": True, "code": code, "signal": None}


def send(fd: int, head: bytes) -> None:
    """One SOCK_SEQPACKET message: the report's JSON, a NUL, the board; then the board is zeroed."""
    try:
        os.writev(fd, [head, SEPARATOR, memoryview(_BOARD).cast("B")])
    finally:
        ctypes.memset(_BOARD, 0, SIZE)


def public(statuses: dict[str, dict]) -> dict[str, dict]:
    """What the report's JSON may say about each process: whether it ended on its own (code, signal and
    resource use travel in the board)."""
    return {role: {"own_exit": bool(st.get("own_exit"))} for role, st in statuses.items()}


def decode(message: bytes) -> tuple[bytes, dict[str, dict]]:
    """In the supervisor: (the JSON part, {role: {"code", "signal", "cpu_s", "maxrss_kb"}}) of a message."""
    head, sep, board = message.partition(SEPARATOR)
    out: dict[str, dict] = {}
    if not sep or len(board) != SIZE:
        return message, out
    for i, role in enumerate(ROLES):
        slot = board[SLOT * i:SLOT * (i + 1)]
        kind = struct.unpack_from("<Q", slot)[0]
        (status,) = struct.unpack_from("<i", slot, 48)
        exited = os.WIFEXITED(status)
        ends = {"code": os.WEXITSTATUS(status) if exited else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
        if kind == 1:
            us, uu, ss, su, rss = struct.unpack_from("<qqqqq", slot, 8)
            out[role] = {**ends, "cpu_s": us + uu / 1e6 + ss + su / 1e6, "maxrss_kb": rss}
        elif kind == 2:
            out[role] = {**ends, "cpu_s": struct.unpack_from("<d", slot, 8)[0], "maxrss_kb": 0}
        elif status:
            out[role] = {**ends, "cpu_s": 0.0, "maxrss_kb": 0}
    return head, out
