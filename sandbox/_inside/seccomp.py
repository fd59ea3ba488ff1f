"""A seccomp-BPF system-call filter built with ctypes (no libseccomp needed), for x86_64 and aarch64.

Default allow, with a deny list aimed at escapes and at reaching outside the sandbox, not at breaking normal
Python programs:
- ptrace and cross-process memory access, kcmp, pidfd_getfd, pidfd_send_signal, process_madvise and
  process_mrelease (pidfd_open is allowed: the zygote waits on pidfds, and with the calls above denied a
  pidfd is only good for poll and for waitid on one's own children);
- mount, namespaces (unshare, setns, clone with CLONE_NEW*), chroot, pivot_root, the new mount API;
- kernel-facing calls: bpf, perf_event_open, userfaultfd, io_uring, keyrings, modules, kexec, reboot, swap,
  syslog, acct, quotactl, open_by_handle_at, personality;
- System V IPC and POSIX message queues (state that would outlive a task inside one IPC namespace);
- sockets other than AF_UNIX, connect, sendto with an address, sendmsg (no network, no host daemons);
- terminal injection (TIOCSTI, TIOCLINUX);
- setting file timestamps (utime, utimes, futimesat, utimensat): anyone who may write to a file may set its
  times to "now", and the device nodes every sandbox shares (/dev/null, /dev/zero, ...) are host inodes no
  clean-up can reset, so a timestamp there would carry data from one program to the next (found this
  session; `os.utime` fails with PermissionError, `Path.touch` still creates files);
- optionally (when neither separate uids nor Landlock signal scoping protect the tester), kill/tkill/tgkill
  aimed at any process but the caller itself.
clone3 answers ENOSYS so that libc falls back to clone, whose flags a filter can inspect. Other
architectures (and the x32 ABI) are refused: `build` raises and the layer is reported as missing.

Parts (`build(..., part=)`): "full" is the filter above. The kernel compiles a filter for each process that
installs it (about 0.25 ms of CPU, mostly fixed cost), so the zygote installs "zygote" on itself and its
children inherit it: the same rules, except that sendmsg/sendmmsg pass on descriptors >= HIGH_FD, where the
zygote keeps the sockets it hands descriptors over; every child's RLIMIT_NOFILE is below HIGH_FD, so for
the children sendmsg stays denied. "kill" is the signal rule alone, which children add where signals are
restricted by pid (it names the child's own pid).
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
RET_KILL_PROCESS, RET_ALLOW = 0x80000000, 0x7FFF0000
AF_UNIX = 1
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
CLONE_NEW_MASK = 0x7E020000          # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (NEWTIME is clone3-only)

_LD_W_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_OFF_NR, _OFF_ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i                 # little-endian low word of args[i]


_COMMON_DENY = ("ptrace process_vm_readv process_vm_writev mount umount2 pivot_root chroot unshare setns bpf "
                "perf_event_open userfaultfd io_uring_setup io_uring_enter io_uring_register keyctl add_key "
                "request_key kexec_load kexec_file_load init_module finit_module delete_module reboot swapon "
                "swapoff syslog acct quotactl quotactl_fd open_by_handle_at name_to_handle_at personality connect "
                "sendmsg sendmmsg pidfd_send_signal pidfd_getfd process_madvise process_mrelease fsopen fsconfig "
                "fsmount move_mount "
                "open_tree fspick mount_setattr kcmp migrate_pages move_pages shmget shmat shmctl semget semop "
                "semctl semtimedop msgget msgsnd msgrcv msgctl mq_open mq_unlink mq_timedsend mq_timedreceive "
                "mq_notify mq_getsetattr vhangup utime utimes futimesat utimensat").split()

PARTS = ("full", "zygote", "kill")
HIGH_FD = 1024         # "zygote": sendmsg only on descriptors >= this (RLIMIT_NOFILE keeps children below)

# Numbers from arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h.
_TABLES = {
    "x86_64": (0xC000003E, dict(
        ptrace=101, process_vm_readv=310, process_vm_writev=311, mount=165, umount2=166, pivot_root=155,
        chroot=161, unshare=272, setns=308, bpf=321, perf_event_open=298, userfaultfd=323, io_uring_setup=425,
        io_uring_enter=426, io_uring_register=427, keyctl=250, add_key=248, request_key=249, kexec_load=246,
        kexec_file_load=320, init_module=175, finit_module=313, delete_module=176, reboot=169, swapon=167,
        swapoff=168, syslog=103, acct=163, quotactl=179, quotactl_fd=443, open_by_handle_at=304,
        name_to_handle_at=303, personality=135, connect=42, sendmsg=46, sendmmsg=307, pidfd_send_signal=424,
        process_madvise=440, process_mrelease=448,
        pidfd_open=434, pidfd_getfd=438, fsopen=430, fsconfig=431, fsmount=432, move_mount=429, open_tree=428,
        fspick=433, mount_setattr=442, kcmp=312, migrate_pages=256, move_pages=279, shmget=29, shmat=30,
        shmctl=31, semget=64, semop=65, semctl=66, semtimedop=220, msgget=68, msgsnd=69, msgrcv=70, msgctl=71,
        mq_open=240, mq_unlink=241, mq_timedsend=242, mq_timedreceive=243, mq_notify=244, mq_getsetattr=245,
        vhangup=153, utime=132, utimes=235, futimesat=261, utimensat=280,
        clone=56, clone3=435, socket=41, sendto=44, kill=62, tkill=200, tgkill=234,
        rt_sigqueueinfo=129, rt_tgsigqueueinfo=297, ioctl=16)),
    "aarch64": (0xC00000B7, dict(
        ptrace=117, process_vm_readv=270, process_vm_writev=271, mount=40, umount2=39, pivot_root=41, chroot=51,
        unshare=97, setns=268, bpf=280, perf_event_open=241, userfaultfd=282, io_uring_setup=425,
        io_uring_enter=426, io_uring_register=427, keyctl=219, add_key=217, request_key=218, kexec_load=104,
        kexec_file_load=294, init_module=105, finit_module=273, delete_module=106, reboot=142, swapon=224,
        swapoff=225, syslog=116, acct=89, quotactl=60, quotactl_fd=443, open_by_handle_at=265,
        name_to_handle_at=264, personality=92, connect=203, sendmsg=211, sendmmsg=269, pidfd_send_signal=424,
        process_madvise=440, process_mrelease=448,
        pidfd_open=434, pidfd_getfd=438, fsopen=430, fsconfig=431, fsmount=432, move_mount=429, open_tree=428,
        fspick=433, mount_setattr=442, kcmp=272, migrate_pages=238, move_pages=239, shmget=194, shmat=196,
        shmctl=195, semget=190, semop=193, semctl=191, semtimedop=192, msgget=186, msgsnd=189, msgrcv=188,
        msgctl=187, mq_open=180, mq_unlink=181, mq_timedsend=182, mq_timedreceive=183, mq_notify=184,
        mq_getsetattr=185, vhangup=58, utimensat=88, clone=220, clone3=435, socket=198, sendto=206, kill=129, tkill=130,
        tgkill=131, rt_sigqueueinfo=138, rt_tgsigqueueinfo=240, ioctl=29)),
}


class _Asm:
    """A tiny BPF assembler with forward labels (jump offsets are 8-bit, relative to the next instruction)."""

    def __init__(self) -> None:
        self.ins: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int, jt: object = 0, jf: object = 0) -> None:
        self.ins.append((code, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def assemble(self) -> bytes:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.ins):
            offs = [self.labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf)]
            if not all(0 <= o <= 255 for o in offs):       # classic BPF: forward jumps of 0..255 only
                raise ValueError("seccomp jump out of range")
            out.append(struct.pack("=HBBI", code, offs[0], offs[1], k))
        return b"".join(out)


def supported_arch() -> str | None:
    machine = platform.machine()
    return machine if machine in _TABLES else None


_TEMPLATES: dict[tuple[bool, str], tuple[bytearray, list[tuple[int, int]]]] = {}
_PID_MARK = 0x5EC0FFEE       # placeholder for the caller's pid in the cached program


def build(own_pid: int, restrict_kill: bool, part: str = "full") -> bytes:
    """The filter program (see PARTS) for a process whose pid (in its own pid namespace) is `own_pid`.

    Assembling costs about half a millisecond of Python, so the program is assembled once per process (the
    zygote) and only the pid constants are patched for each child."""
    key = (restrict_kill, part)
    if key not in _TEMPLATES:
        prog = bytearray(_assemble(_PID_MARK, restrict_kill, part))
        patches = []
        for off in range(0, len(prog), 8):
            k = struct.unpack_from("=I", prog, off + 4)[0]
            if k in (_PID_MARK, (-_PID_MARK) & 0xFFFFFFFF):
                patches.append((off + 4, 1 if k == _PID_MARK else -1))
        _TEMPLATES[key] = (prog, patches)
    prog, patches = _TEMPLATES[key]
    out = bytearray(prog)
    for off, sign in patches:
        struct.pack_into("=I", out, off, (sign * own_pid) & 0xFFFFFFFF)
    return bytes(out)


def _assemble(own_pid: int, restrict_kill: bool, part: str = "full") -> bytes:
    arch = supported_arch()
    if arch is None:
        raise OSError(errno.ENOSYS, f"seccomp filter not available for {platform.machine()}")
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    audit_arch, nr = _TABLES[arch]
    eperm, enoafs = 0x00050000 | errno.EPERM, 0x00050000 | errno.EAFNOSUPPORT
    a = _Asm()
    a.op(_LD_W_ABS, _OFF_ARCH)
    a.op(_JEQ, audit_arch, 1, 0)
    a.op(_RET, RET_KILL_PROCESS)
    a.op(_LD_W_ABS, _OFF_NR)
    if part == "kill":                              # only the signal rule, stacked on an inherited filter
        for name in _KILLS:
            a.op(_JEQ, nr[name], "kill", 0)
        a.op(_RET, RET_ALLOW)
        _kill_rule(a, own_pid, eperm)
        return a.assemble()
    if arch == "x86_64":
        a.op(_JGE, 0x40000000, "deny", 0)           # x32 ABI
    high_fd = part == "zygote"
    for name in _COMMON_DENY:
        if name not in nr:                          # e.g. utime and utimes do not exist on aarch64
            continue
        if high_fd and name in ("sendmsg", "sendmmsg"):
            a.op(_JEQ, nr[name], "high_fd", 0)
        else:
            a.op(_JEQ, nr[name], "deny", 0)
    a.op(_JEQ, nr["clone3"], "enosys", 0)
    a.op(_JEQ, nr["clone"], "clone", 0)
    a.op(_JEQ, nr["socket"], "socket", 0)
    a.op(_JEQ, nr["sendto"], "sendto", 0)
    a.op(_JEQ, nr["ioctl"], "ioctl", 0)
    if restrict_kill:
        for name in _KILLS:
            a.op(_JEQ, nr[name], "kill", 0)
    a.label("allow")
    a.op(_RET, RET_ALLOW)
    a.label("deny")
    a.op(_RET, eperm)
    a.label("enosys")
    a.op(_RET, 0x00050000 | errno.ENOSYS)
    # BPF jumps only go forward, so each block below ends in its own return instructions.
    a.label("clone")
    a.op(_LD_W_ABS, _arg_lo(0))
    a.op(_JSET, CLONE_NEW_MASK, 0, 1)
    a.op(_RET, eperm)
    a.op(_RET, RET_ALLOW)
    a.label("socket")
    a.op(_LD_W_ABS, _arg_lo(0))
    a.op(_JEQ, AF_UNIX, 0, 1)
    a.op(_RET, RET_ALLOW)
    a.op(_RET, enoafs)
    a.label("sendto")
    a.op(_LD_W_ABS, _arg_lo(4))
    a.op(_JEQ, 0, 0, 3)
    a.op(_LD_W_ABS, _arg_lo(4) + 4)
    a.op(_JEQ, 0, 0, 1)
    a.op(_RET, RET_ALLOW)
    a.op(_RET, eperm)
    a.label("ioctl")
    a.op(_LD_W_ABS, _arg_lo(1))
    a.op(_JEQ, TIOCSTI, 2, 0)
    a.op(_JEQ, TIOCLINUX, 1, 0)
    a.op(_RET, RET_ALLOW)
    a.op(_RET, eperm)
    if high_fd:
        a.label("high_fd")
        a.op(_LD_W_ABS, _arg_lo(0) + 4)             # a descriptor is an int: the high word must be 0
        a.op(_JEQ, 0, 0, 2)
        a.op(_LD_W_ABS, _arg_lo(0))
        a.op(_JGE, HIGH_FD, 1, 0)
        a.op(_RET, eperm)
        a.op(_RET, RET_ALLOW)
    if restrict_kill:
        _kill_rule(a, own_pid, eperm)
    return a.assemble()


_KILLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")


def _kill_rule(a: _Asm, own_pid: int, eperm: int) -> None:
    a.label("kill")
    a.op(_LD_W_ABS, _arg_lo(0))
    a.op(_JEQ, own_pid, 3, 0)
    a.op(_JEQ, 0, 2, 0)                             # own process group
    a.op(_JEQ, -own_pid, 1, 0)                      # own process group, by number
    a.op(_RET, eperm)
    a.op(_RET, RET_ALLOW)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)


def install(program: bytes) -> None:
    """Install `program` on the calling thread (sets no_new_privs first, as unprivileged seccomp needs)."""
    buf = ctypes.create_string_buffer(program, len(program))
    _install(buf, len(program) // 8)


def _install(buf: ctypes.Array, n_instructions: int) -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_NO_NEW_PRIVS)")
    prog = _SockFprog(n_instructions, ctypes.cast(buf, ctypes.c_void_p))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")


class Prepared:
    """A filter assembled once (in the zygote) into a C buffer; a forked child patches in its pid (when
    kill is restricted) and installs it, which keeps the per-child cost to two prctl calls."""

    def __init__(self, restrict_kill: bool, part: str = "full") -> None:
        self.restrict_kill, self.part = restrict_kill, part
        build(1, restrict_kill, part)
        template, self.patches = _TEMPLATES[(restrict_kill, part)]
        self.buf = ctypes.create_string_buffer(bytes(template), len(template))

    def install(self, own_pid: int) -> None:
        for off, sign in self.patches:
            struct.pack_into("=I", self.buf, off, (sign * own_pid) & 0xFFFFFFFF)
        _install(self.buf, len(self.buf) // 8)
