"""Landlock (Linux >= 5.13) through ctypes: an allow-list of paths, no TCP, and signal/abstract-socket scoping.

A ruleset is built once in the zygote (`build_ruleset`) and enforced in each forked child with
`restrict_self`, which costs one system call. What the running kernel supports is read from its ABI version:
1 files, 2 +refer, 3 +truncate, 4 +TCP bind/connect, 5 +device ioctl, 6 +scoping of abstract unix sockets
and signals. Every right the ABI knows is "handled", so anything not explicitly allowed is denied.
"""
from __future__ import annotations

import ctypes
import os
import struct

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446   # same numbers on all architectures
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 16, 32, 64, 128
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK, FS_MAKE_SYM = 256, 512, 1024, 2048, 4096
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 8192, 16384, 32768
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2

READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
_FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """0 when the kernel has no Landlock (or it is disabled at boot)."""
    try:
        v = _libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    except (AttributeError, OSError):
        return 0
    return max(int(v), 0)


def fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1                      # ABI 1: bits 0..12
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock {what}: {os.strerror(err)}")
    return ret


def build_ruleset(abi: int, read_paths: list[str], rw_paths: list[str], dev_paths: list[str]) -> int:
    """Return a ruleset fd: read+execute under `read_paths`, everything under `rw_paths`, read/write of the
    device files in `dev_paths`; all TCP bind/connect denied (ABI >= 4); signals and abstract unix sockets
    scoped to the sandbox's own domain (ABI >= 6). Missing paths are skipped."""
    handled_fs = fs_rights(abi)
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled_fs, handled_net)
    else:
        attr = struct.pack("=Q", handled_fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = _check(_libc.syscall(SYS_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)), "create")
    try:
        for path in read_paths:
            _add_path(fd, path, READ & handled_fs)
        for path in rw_paths:
            _add_path(fd, path, handled_fs)
        for path in dev_paths:
            _add_path(fd, path, (FS_READ_FILE | FS_WRITE_FILE | FS_IOCTL_DEV) & handled_fs)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _add_path(ruleset_fd: int, path: str, access: int) -> None:
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not os.path.isdir(path):
            access &= _FILE_ONLY                 # directory-only rights are rejected on files
        attr = struct.pack("=Qi", access, pfd)   # struct landlock_path_beneath_attr is packed
        buf = ctypes.create_string_buffer(attr, len(attr))
        _check(_libc.syscall(SYS_ADD_RULE, ctypes.c_int(ruleset_fd), ctypes.c_int(RULE_PATH_BENEATH), buf,
                             ctypes.c_uint32(0)), f"add rule for {path}")
    finally:
        os.close(pfd)


def restrict_self(ruleset_fd: int) -> None:
    """Enforce the ruleset on the calling thread (needs PR_SET_NO_NEW_PRIVS or CAP_SYS_ADMIN first)."""
    _check(_libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset_fd), ctypes.c_uint32(0)), "restrict_self")
