"""A fresh working directory for every run, and every directory a program could mark restored before the next.

Why: whatever one program leaves where the next can see it is a channel between samples (a program that
computes nothing can search the answers across runs), and a trap (a default ACL that makes the next,
correct program fail with PermissionError). Found by the second hostile corpus: the working directory kept
its extended attributes, timestamps and default ACLs across runs.

Layout: a stable *home* `H` (`/tmp/h` under a private /tmp) holds the working directory `H/w`. Landlock's
read-write rule is on H, built once; `w` is a new directory (new inode, no xattrs, no ACLs, fresh
timestamps) for every run, and in a chunk of stdin/stdout cases for every case (`leader.py`). As root H is
root's, mode 1733: a solution's uid may create and remove its own entries there (the chunk leader replaces
`w`) but cannot list, chmod, tag or time-stamp H itself. Without root everything shares one uid, so H and
the other directories that uid owns ("/", /tmp, /dev, /dev/shm, /etc under bubblewrap) are *watched*.

Per run the zygote compares each watched directory's `lstat` with the mark it took after the previous
clean-up (inode, mode, owner, link count and all three timestamps: ctime moves with every chmod, xattr and
ACL change, mtime with every entry, atime with every listing). Only what changed is repaired, by a
*janitor*: a forked child that removes trees and restores metadata, then exits. The zygote itself never
lists a directory the program could write to: names and attributes would end up as Python objects in its
heap, freed but not erased, and every later solution process is forked from that heap (found this session:
file names one program created were readable in the next program's memory). Removal is iterative with one
descriptor open, so no depth (1,500 nested directories once raised RecursionError and killed the zygote)
and no path length stops it, and bounded by a deadline: a janitor that cannot finish makes the zygote
retire its worker instead of running the next program in a dirty directory.

What a program can still observe (documented in the threat model): when the directory was created (the
ctime of a fresh `w`), as it can observe its own start time; counters such as inode and pid numbers.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import stat
import time

JANITOR_S = 5.0                  # how long a janitor may take before the worker is retired
SCAN_BATCH = 4096                # subdirectory names kept per level while removing a tree
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def mark(path: str) -> tuple | None:
    """What the program could change about a directory, as one comparable value (None if unreachable)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_atime_ns,
            st.st_mtime_ns, st.st_ctime_ns)


class Marks:
    """Marks of a fixed set of directories, kept as raw `struct stat` bytes in preallocated buffers: what a
    program set there (a mode, a link count, a time) never becomes a Python number in the zygote's heap,
    which later solution processes inherit. Compared with memcmp; `same` checks device, inode, mode and
    owner. Where the layout of struct stat is not known here, tuples from os.lstat are used instead."""

    SIZE = 256
    _IDENTITY = {"x86_64": ((0, 16), (24, 12)), "aarch64": ((0, 16), (16, 4), (24, 8))}
    _MTIME = {"x86_64": 88, "aarch64": 80}           # st_mtim then st_ctim, 16 bytes each

    def __init__(self, paths: list[str]) -> None:
        import ctypes
        import platform
        self._c = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self._fstatat = getattr(libc, "fstatat", None)
        self._memcmp = libc.memcmp
        self._memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        self._memcmp.restype = ctypes.c_bool            # "differs", without an int for the difference
        if self._fstatat is not None:
            self._fstatat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        self._identity = self._IDENTITY.get(platform.machine())
        self._mtime = self._MTIME.get(platform.machine(), 0)
        self._listxattr = getattr(libc, "listxattr", None)
        if self._listxattr is not None:
            self._listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
            self._listxattr.restype = ctypes.c_bool     # "has attributes or failed", without their size
        self.raw = self._fstatat is not None and self._identity is not None
        self._scratch = ctypes.create_string_buffer(self.SIZE)
        self._saved = {p: ctypes.create_string_buffer(self.SIZE) for p in paths}
        self._names = {p: p.encode() for p in paths}
        self._tuples: dict[str, tuple | None] = {}
        self._ok: dict[str, bool] = {}
        for p in paths:
            self.take(p)
        # Timestamps move in coarse ticks (4 ms here) unless the kernel hands out a fine-grained one, so an
        # attribute set right after our mark may leave the ctime as it was: attributes are checked directly
        # (where a directory had none to begin with).
        self._bare = {p: self._listxattr is not None and not self._listxattr(self._names[p], None, 0)
                      for p in paths}

    def _stat(self, path: str) -> bool:
        """Fill the scratch buffer (the bytes past struct stat stay zero in every buffer)."""
        if not self.raw:
            self._tuples["_scratch"] = mark(path)
            return self._tuples["_scratch"] is not None
        if self._fstatat(-100, self._names[path], self._scratch, 0x100) == 0:     # AT_FDCWD, no symlinks
            return True
        self._c.memset(self._scratch, 0, self.SIZE)
        return False

    def changed(self, path: str) -> bool:
        if self._bare.get(path) and self._listxattr(self._names[path], None, 0):
            return True
        ok = self._stat(path)
        if not self.raw:
            return self._tuples["_scratch"] != self._tuples.get(path)
        return not ok or not self._ok[path] or bool(self._memcmp(self._scratch, self._saved[path], self.SIZE))

    def only_times_changed(self, path: str) -> bool:
        """Whether nothing but the directory's mtime and ctime moved since its mark (entries replaced one for one,
        as the chunk leader replaces the working directory), and it has no extended attributes."""
        if not self.raw or self._listxattr is None or not self._ok[path] or not self._stat(path):
            return False
        scratch, saved, m = self._c.addressof(self._scratch), self._c.addressof(self._saved[path]), self._mtime
        return not (self._memcmp(scratch, saved, m) or self._memcmp(scratch + m + 32, saved + m + 32,
                                                                  self.SIZE - m - 32)
                    or self._listxattr(self._names[path], None, 0))

    def take(self, path: str) -> bool:
        """Record the directory's current mark; True when it still is the same directory (device, inode,
        mode, owner) as the one marked before (or when it is marked for the first time)."""
        ok = self._stat(path)
        if not self.raw:
            new, old = self._tuples.get("_scratch"), self._tuples.get(path, "first")
            self._tuples[path] = new
            return new is not None and (old == "first" or (old is not None and new[:5] == old[:5]))
        first = path not in self._ok
        same = first or (ok and self._ok[path] and not any(
            self._memcmp(self._c.addressof(self._scratch) + a, self._c.addressof(self._saved[path]) + a, n)
            for a, n in self._identity))
        self._c.memmove(self._saved[path], self._scratch, self.SIZE)
        self._ok[path] = ok
        return ok and same


def watch_list(candidates: list[str], uid: int, skip: set[str]) -> list[str]:
    """The candidate directories whose metadata `uid` could change (it owns them) or whose entries anyone
    may change (world-writable), parents first."""
    out = []
    for path in sorted(set(candidates), key=lambda p: (p.count("/"), p)):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if path not in skip and stat.S_ISDIR(st.st_mode) and (st.st_uid == uid or st.st_mode & 0o002):
            out.append(path)
    return out


# --------------------------------------------------------------------------------------------- removal
def _open_dir(parent: int, name: str) -> int | None:
    """A descriptor of directory `name` under `parent`, made ours to enter first if need be; None if it is
    not a directory (any more)."""
    for attempt in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except (NotADirectoryError, FileNotFoundError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP or attempt:
                return None
            try:
                os.chmod(name, 0o700, dir_fd=parent)     # nothing of the run is alive to swap it for a link
            except OSError:
                return None
    return None


def _unlink(parent: int, name: str) -> bool:
    """Remove a non-directory (True), or say it is a directory (False)."""
    for attempt in range(2):
        try:
            os.unlink(name, dir_fd=parent)
            return True
        except FileNotFoundError:
            return True
        except IsADirectoryError:
            return False
        except PermissionError:
            try:
                if stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                    return False                # EPERM for a directory on some file systems
                if not attempt:
                    os.fchmod(parent, 0o700)    # a directory the program made read-only: ours to write
            except OSError:
                return True
    return True


def _scan(fd: int) -> tuple[list[str], bool]:
    """Remove the files and empty subdirectories of directory `fd`; return (some of) the others, and whether
    there may be more than were returned."""
    subdirs: list[str] = []
    with os.scandir(fd) as it:
        for entry in it:
            if not _unlink(fd, entry.name):
                try:
                    os.rmdir(entry.name, dir_fd=fd)
                except PermissionError:
                    os.fchmod(fd, 0o700)
                    subdirs.append(entry.name)
                except OSError:
                    subdirs.append(entry.name)
                if len(subdirs) >= SCAN_BATCH:
                    return subdirs, True
    return subdirs, False


def remove_entry(parent: int, name: str, deadline: float) -> bool:
    """Remove `name` under directory `parent` and everything below it: iterative, one descriptor open at a
    time (it climbs back with ".."; nothing of the run is alive to move directories meanwhile). False if
    the deadline passed first or something could not be removed."""
    if _unlink(parent, name):
        return True
    fd = _open_dir(parent, name)
    if fd is None:
        return _unlink(parent, name)
    names = [name]                              # the directories from `parent` down to the current one
    pending: list[tuple[list[str], bool] | None] = [None]
    try:
        while True:
            if time.monotonic() > deadline:
                return False
            if pending[-1] is None:
                pending[-1] = _scan(fd)
            subdirs, more = pending[-1]
            if subdirs:
                sub = subdirs.pop()
                child = _open_dir(fd, sub)
                if child is not None:
                    os.close(fd)
                    fd = child
                    names.append(sub)
                    pending.append(None)
                continue
            if more:
                pending[-1] = None              # the batch was cut short: scan again
                continue
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            pending.pop()
            try:
                os.rmdir(names.pop(), dir_fd=fd)
            except FileNotFoundError:
                pass
            if not names:
                return True
    except OSError:
        return False
    finally:
        os.close(fd)


def empty(path: str, keep: set[str], deadline: float) -> bool:
    """Remove every entry of directory `path` except those named in `keep`."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return False
    try:
        with os.scandir(fd) as it:
            names = [e.name for e in it if e.name not in keep]
        return all(remove_entry(fd, n, deadline) for n in names)
    except OSError:
        return False
    finally:
        os.close(fd)


def _owner_and_mode(path: str) -> tuple | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_mode, st.st_uid, st.st_gid


def restore(path: str, want: tuple, as_root: bool) -> bool:
    """Give a watched directory back its mode (and owner, as root) and drop every extended attribute
    (user tags and POSIX ACLs alike)."""
    mode, uid, gid = want
    try:
        os.chmod(path, stat.S_IMODE(mode))
        if as_root:
            os.chown(path, uid, gid, follow_symlinks=False)
        for attr in os.listxattr(path, follow_symlinks=False):
            os.removexattr(path, attr, follow_symlinks=False)
    except OSError:
        return False
    return True


def touch_atime(path: str) -> None:
    """Leave the directory's atime at *our* time: change it (so relatime updates), then list it. Without
    this, a listing by the program would leave its own time there (read by the next program)."""
    tmp = os.path.join(path, f".sbx-renew-{os.getpid()}")
    try:
        os.mkdir(tmp, 0o700)
        os.rmdir(tmp)
        with os.scandir(path) as it:
            for _ in it:
                pass
    except OSError:
        pass


# -------------------------------------------------------------------------------------------- janitor
def janitor(jobs: list[tuple], as_root: bool, budget_s: float = JANITOR_S) -> bool:
    """Run clean-up jobs in a forked child, so that no name or attribute the program chose enters this
    process's memory. Jobs, in order: ("restore", path, mark), ("empty", path, keep), ("remove", path)
    (the directory itself too), ("touch", path). True when every job finished within `budget_s`."""
    deadline = time.monotonic() + budget_s
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            ok = _run_jobs(jobs, as_root, deadline)
        finally:
            os._exit(0 if ok else 1)
    return _wait_child(pid, deadline + 1.0)


def _run_jobs(jobs: list[tuple], as_root: bool, deadline: float) -> bool:
    ok = True
    for job in jobs:
        kind, path = job[0], job[1]
        if kind == "restore":
            ok = restore(path, job[2], as_root) and ok
        elif kind == "empty":
            ok = empty(path, job[2], deadline) and ok
        elif kind == "remove":
            parent, name = os.path.split(path)
            try:
                fd = os.open(parent, _DIR_FLAGS)
            except OSError:
                ok = False
                continue
            try:
                ok = remove_entry(fd, name, deadline) and ok
            finally:
                os.close(fd)
        elif kind == "touch":
            touch_atime(path)
    return ok


def _wait_child(pid: int, deadline: float) -> bool:
    pidfd = os.pidfd_open(pid)
    try:
        while not select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                break
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# ------------------------------------------------------------------------------------------ workspace
class Workspace:
    """The home, the working directory, the temporary roots and the watched directories of one zygote.

    `renew()` after every run: compare marks, repair what changed (through a janitor), replace the working
    directory. `watch` is what a chunk leader compares between its cases (leader.py)."""

    def __init__(self, private_tmp: bool, roots: tuple[str, ...], owner: int | None, uid: int,
                 candidates: list[str]) -> None:
        self.as_root = os.geteuid() == 0
        self.owner = owner                        # the solution's uid when it differs from ours (root)
        self.home = "/tmp/h" if private_tmp else _mkdtemp()
        self.workdir = os.path.join(self.home, "w")
        self.roots = [r for r in roots if os.path.isdir(r)] if private_tmp else []
        # What the roots hold before any program ran (bubblewrap's mount points for a checkout under /tmp):
        # names of our own, kept when a root is emptied.
        self.initial = {r: set(os.listdir(r)) | {os.path.basename(self.home)} for r in self.roots}
        self.make_home()
        self.make_workdir()
        skip = set(self.roots) | {self.home}
        self.watched = watch_list(candidates, uid, skip) if private_tmp else []
        self.want = {p: _owner_and_mode(p) for p in self.all()}         # ours: taken before any program ran
        self.marks = Marks(self.all())
        # On tmpfs a directory's size counts its entries (20 bytes each), so "only mtime and ctime moved"
        # means its entries were replaced one for one; on other file systems it says nothing.
        self.entry_sizes = _on_tmpfs(self.home)

    def all(self) -> list[str]:
        """Every directory whose mark is compared, parents first."""
        return sorted({self.home, *self.roots, *self.watched}, key=lambda p: (p.count("/"), p))

    def make_home(self) -> None:
        os.makedirs(self.home, exist_ok=True)
        # As root, 1733: the solution's uid may add and remove its own entries, but not list or change H.
        os.chmod(self.home, 0o1733 if self.as_root else 0o700)

    def make_workdir(self) -> None:
        os.mkdir(self.workdir, 0o700)
        if self.owner is not None:
            os.chown(self.workdir, self.owner, self.owner)
        os.chmod(self.workdir, 0o700)

    def renew(self) -> bool:
        """After a run: a new working directory, and whatever the run changed repaired. False when the
        janitor could not finish or a directory is not as it was (then the worker must be retired)."""
        changed = [p for p in self.all() if self.marks.changed(p)]
        if changed == [self.home] and self.entry_sizes and self.marks.only_times_changed(self.home):
            changed = []                          # a chunk leader replaced the working directory: ours to renew
        jobs: list[tuple] = [("restore", p, self.want[p]) for p in changed if self.want[p] is not None]
        jobs += [("empty", r, self.initial[r]) for r in self.roots if r in changed]
        if self.home in changed:
            jobs.append(("empty", self.home, set()))
        else:
            try:
                os.rmdir(self.workdir)            # the usual case: nothing left in it
            except FileNotFoundError:
                pass
            except OSError:
                jobs.append(("remove", self.workdir))
        jobs += [("touch", p) for p in changed]
        ok = janitor(jobs, self.as_root) if jobs else True
        try:
            if not os.path.isdir(self.home) or os.path.islink(self.home):
                ok = False
            else:
                self.make_workdir()
        except OSError:
            ok = False
        return self._remark(changed) and ok

    def _remark(self, changed: list[str]) -> bool:
        """New marks for what we or the run changed; a watched directory must stay the same directory."""
        results = [self.marks.take(p) for p in sorted(set(changed) | {self.home})]
        return all(results)

    def remove_all(self) -> None:
        """At shutdown, outside a private /tmp: remove the home (no child is left to fork for)."""
        parent, name = os.path.split(self.home)
        try:
            fd = os.open(parent, _DIR_FLAGS)
        except OSError:
            return
        try:
            remove_entry(fd, name, time.monotonic() + JANITOR_S)
        finally:
            os.close(fd)


def _on_tmpfs(path: str) -> bool:
    import ctypes
    buf = ctypes.create_string_buffer(256)                       # struct statfs; f_type comes first
    if ctypes.CDLL(None).statfs(path.encode(), buf) != 0:
        return False
    return int.from_bytes(buf.raw[:8], "little") & 0xFFFFFFFF == 0x01021994      # TMPFS_MAGIC


def _mkdtemp() -> str:
    import tempfile
    return tempfile.mkdtemp(prefix="sbx-h-")
