"""The split harness's parts as pure functions: free names, announced-name checks, exception mapping,
argument write-back, tolerant comparison, and the iterative remover and workspace of fresh.py."""
from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import time

import pytest

from sandbox._inside import fresh, names, tester, wire, writeback


def test_free_names_are_read_and_never_bound():
    source = ("import math\nfrom os import path\ndef check(candidate):\n    assert candidate(1) == helper(2)\n"
              "    global G\n    G = 1\n    return [candidate(i) for i in range(2)]\nclass T:\n    y = foo\n"
              "check(add)\nz = 1\nprint(z, __name__, math.pi, __sbx_fail__(0), G)\n")
    assert names.free_names((source, "tests.py")) == ["add", "foo", "helper", "print", "range"]
    # a name the prelude defines is not the solution's, even if the tests read it
    assert names.free_names(("assert poly(1) == f(1)\n", "t.py"), ("def poly(x):\n    return x\n", "p.py")) == ["f"]


def test_announced_names_are_checked_against_the_free_names():
    table = {"add": "callable", "__sbx_fail__": "callable", "helper": "data", "len": "callable",
             "math": "module:cmath", "re": "module:re", "path": "module:posixpath", "odd": 3, "x": "weird"}
    free = ["add", "helper", "len", "math", "re", "path", "odd", "x"]
    assert names.allowed(free, table, [], set()) == {"add": "callable", "helper": "data", "re": "module:re"}
    assert names.allowed(free, table, ["len"], {"add"}) == {"helper": "data", "len": "callable", "re": "module:re"}
    assert not names.importable("site", "site") and not names.importable("unittest", "unittest")
    assert names.importable("abc", "collections.abc") and names.importable("os", "os")


@pytest.mark.parametrize("name, want", [
    ("StopIteration", RuntimeError), ("StopAsyncIteration", RuntimeError), ("ValueError", ValueError),
    ("GeneratorExit", tester.RemoteError), ("SystemExit", tester.RemoteError), ("KeyboardInterrupt", tester.RemoteError),
    ("ExceptionGroup", tester.RemoteError), ("MyError", tester.RemoteError), ("UnicodeDecodeError", UnicodeDecodeError),
])
def test_remote_exceptions_map_to_safe_types(name, want):
    exc = names.remote_exception(name, "text", tester.RemoteError)
    assert isinstance(exc, want) and type(exc).__name__ == want.__name__ and "text" in str(exc)


def test_write_back_changes_only_what_changed():
    sent = wire.encode([[3, 1], 5, (1, [2])])
    after = [[1, 3], 5, (1, [2, 9])]
    moved = writeback.changed(sent, after)
    assert set(moved) == {"0", "2"}
    args = ([3, 1], 5, (1, [2]))
    inner = args[2][1]
    writeback.apply(args, {}, {"args": moved})
    assert args == ([1, 3], 5, (1, [2, 9])) and args[2][1] is inner
    assert writeback.changed(wire.encode([[1], "s"]), [[1], "s"]) is None


def test_sync_keeps_identity_and_order():
    row = [1, 2]
    old = {"a": row, "b": {1}, "c": (1, [2])}
    writeback.sync(old, {"c": (5, [2]), "a": [1, 2, 3], "d": bytearray(b"x")})
    assert old == {"c": (5, [2]), "a": [1, 2, 3], "d": bytearray(b"x")} and old["a"] is row
    assert list(old) == ["c", "a", "d"]


@pytest.mark.parametrize("got, want, tol, ok", [
    (10 ** 400, 10 ** 400, 1e-9, True), (10 ** 400 + 1, 10 ** 400, 1e-9, True), (2 * 10 ** 400, 10 ** 400, 1e-9, False),
    (float("inf"), 10 ** 400, 1e-9, False), (float("nan"), float("nan"), 1e-9, False), (1.0 + 1e-12, 1, 1e-9, True),
    (True, 1, 0.5, True), ([1, 2.0000001], [1, 2], 1e-6, True), ({1: 2.0}, {1: 2}, None, True), ("a", "b", 1.0, False),
])
def test_close_enough_exact_first(got, want, tol, ok):
    assert tester.close_enough(got, want, tol) is ok


# ---------------------------------------------------------------------------------------------- fresh
def _tree(root: str, depth: int, name: str) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as f:
        f.write("x")
    os.close(fd)


@pytest.fixture
def scratch(tmp_path):
    """A directory on tmpfs when there is one (as in the sandbox): on a disk, 10,000 entries take seconds."""
    if os.access("/dev/shm", os.W_OK):
        d = tempfile.mkdtemp(dir="/dev/shm", prefix="sbx-test-")
        yield pathlib.Path(d)
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


@pytest.mark.parametrize("depth, name", [(1500, "d"), (100, "n" * 250)], ids=["deep", "longer_than_path_max"])
def test_remove_entry_is_iterative(scratch, depth, name):
    tmp_path = scratch
    os.mkdir(tmp_path / "t")
    _tree(str(tmp_path / "t"), 0, "x")                     # t/leaf: a sibling that must stay
    os.mkdir(tmp_path / "t" / "top")
    _tree(str(tmp_path / "t" / "top"), depth, name)
    for i in range(5000):                                  # more subdirectories than one scan batch keeps
        os.mkdir(tmp_path / "t" / "top" / f"s{i}")
        open(tmp_path / "t" / "top" / f"s{i}" / "f", "w").close()
    os.chmod(tmp_path / "t" / "top" / "s7", 0)
    fd = os.open(tmp_path / "t", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert fresh.remove_entry(fd, "top", time.monotonic() + 60)
    finally:
        os.close(fd)
    assert sorted(os.listdir(tmp_path / "t")) == ["leaf"]


def test_remove_entry_stops_at_its_deadline(tmp_path):
    os.mkdir(tmp_path / "top")
    for i in range(200):
        os.mkdir(tmp_path / "top" / f"s{i}")
        open(tmp_path / "top" / f"s{i}" / "f", "w").close()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not fresh.remove_entry(fd, "top", time.monotonic() - 1)
    finally:
        os.close(fd)


def test_workspace_renews_the_working_directory(tmp_path):
    space = fresh.Workspace(False, (), None, os.getuid(), [])
    try:
        os.chmod(space.workdir, 0o755)                                          # metadata only: rmdir + mkdir
        assert space.renew() and os.stat(space.workdir).st_mode & 0o777 == 0o700
        if _xattrs(space.workdir):
            os.setxattr(space.workdir, "user.k", b"v")
        os.makedirs(os.path.join(space.workdir, "a", "b"))
        open(os.path.join(space.home, "sibling"), "w").close()                  # next to it, in the home
        assert space.renew()
        assert os.listdir(space.home) == ["w"] and os.listdir(space.workdir) == []
        assert os.listxattr(space.workdir) == []
        os.chmod(space.home, 0o750)                                             # the home itself, changed
        assert space.renew() and os.stat(space.home).st_mode & 0o7777 == (0o1733 if os.geteuid() == 0 else 0o700)
    finally:
        space.remove_all()
    assert not os.path.exists(space.home)


def _xattrs(path: str) -> bool:
    try:
        os.setxattr(path, "user.probe", b"1")
        os.removexattr(path, "user.probe")
        return True
    except OSError:
        return False


def test_marks_see_every_change_and_identity(scratch):
    d = str(scratch / "d")
    os.mkdir(d)
    marks = fresh.Marks([d])
    assert marks.raw and not marks.changed(d)
    os.chmod(d, 0o750)
    assert marks.changed(d)
    assert not marks.take(d)                         # mode differs: not the same directory any more
    assert marks.take(d) and not marks.changed(d)
    open(os.path.join(d, "f"), "w").close()
    assert marks.changed(d) and marks.take(d)        # an entry: changed, same directory
    os.unlink(os.path.join(d, "f"))
    marks.take(d)
    os.mkdir(d + "2", 0o750)                         # made while the old one exists: a different inode
    os.rmdir(d)
    os.rename(d + "2", d)
    assert marks.changed(d) and not marks.take(d)


def test_a_replaced_working_directory_needs_no_janitor_but_anything_else_does(scratch, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    space = fresh.Workspace(False, (), None, os.getuid(), [])
    forks = []
    monkeypatch.setattr(fresh, "janitor", lambda jobs, as_root: forks.append(jobs) or True)
    try:
        os.rmdir(space.workdir)                              # what a chunk leader does between cases
        os.mkdir(space.workdir, 0o700)
        assert space.renew() and forks == []
        changes = [lambda: open(os.path.join(space.home, "sibling"), "w").close(),
                   lambda: os.chmod(space.home, 0o750)]
        if _xattrs(space.home):
            changes.append(lambda: os.setxattr(space.home, "user.k", b"v"))
        for change in changes:
            os.rmdir(space.workdir)
            os.mkdir(space.workdir, 0o700)
            change()
            space.renew()
            assert forks and forks[-1][0][:2] == ("restore", space.home), forks
            forks.clear()
            for name in os.listdir(space.home):              # the fake janitor did nothing: tidy by hand
                if name != "w":
                    os.unlink(os.path.join(space.home, name))
            for attr in os.listxattr(space.home):
                os.removexattr(space.home, attr)
            os.chmod(space.home, 0o1733 if os.geteuid() == 0 else 0o700)
            space.renew()
            forks.clear()
    finally:
        space.remove_all()


def test_only_times_changed_looks_at_its_own_directory(scratch):
    home, other = str(scratch / "h"), str(scratch / "o")
    os.makedirs(home + "/w")
    os.mkdir(other)
    marks = fresh.Marks([home, other])
    os.rmdir(home + "/w")
    os.mkdir(home + "/w")
    # within one clock tick the times may not move at all; then nothing is visible, which is fine
    assert not marks.changed(other) and (not marks.changed(home) or marks.only_times_changed(home))
    assert not marks.changed(other)                               # `other` is the last one stat'ed
    assert marks.only_times_changed(home)
    open(home + "/x", "w").close()                                # an entry: the size counts it on tmpfs
    assert marks.changed(home) and not marks.only_times_changed(home)


def test_attributes_are_seen_even_when_the_clock_has_not_ticked(scratch):
    d = str(scratch / "d")
    os.mkdir(d)
    if not _xattrs(d):
        pytest.skip("no user xattrs on this file system")
    marks = fresh.Marks([d])
    os.setxattr(d, "user.k", b"v")                                # at once: ctime may still read the same
    assert marks.changed(d) and not marks.only_times_changed(d)
