"""The tester's process: runs the tests and reports each one to the supervisor, calling the solution over a pipe.

Descriptors: 0/1 /dev/null, 2 stderr (diagnostics), 3 control channel to the supervisor (tests in, results
out), 4 channel to the solution's process.

The tests never share a process with the solution. A free name of the test source (names.py: read, never
bound, never a dunder) that the solution defines becomes a proxy here: calling it sends the arguments as
plain data and receives the return value decoded by `wire.decode`, so it is an exact built-in type whose
comparisons the solution cannot influence; arguments the call changed in place are written back
(writeback.py), and exceptions that would steer the test's control flow are mapped (names.py). A module the
solution imported (e.g. `math` in MBPP tests) is imported here under its own name; a plain-data global is
copied. The tests run as a module registered as `__main__` (for `unittest.main()`), and their own
`sys.exit` ends them as it ends a script.

Per-test results ("units") for `assert` sources: every top-level statement that contains an `assert`, and
every such statement directly inside a top-level function (HumanEval's `check`), is one unit; a unit passes
when each of its executions finished without an exception. Decided units are sent to the supervisor whenever a
call into the solution does not answer within `FLUSH_AFTER_S`, and at the end, so a timeout keeps the ones
already decided while a fast test run wakes the supervisor once. Units never reached count as failed. Without
any `assert`, the whole source is one unit that passes if it runs to the end. An optional trusted `prelude`
runs first and overrides the solution's names (HumanEval's prompt helpers).
"""
from __future__ import annotations

import ast
import base64
import builtins
import importlib
import marshal
import math
import os
import select
import socket
import sys
import time
import types
from fractions import Fraction
from typing import Any

from . import board, names, wire, writeback

CTL, PEER = 3, 4
RUNS_PER_TESTER = 64      # the zygote replaces its long-lived tester after this many runs
FLUSH_AFTER_S = 0.002     # decided units are sent when a call has not answered within this time (and at the end)


class RemoteError(Exception):
    """The solution raised an exception that is not a built-in `Exception` type, or its process is gone."""


class Tester:
    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self.dead: str | None = None
        self.reported: dict[int, bool] = {}
        self.errors = 0
        self.pending: list[dict] = []

    # ---------------------------------------------------------------------------------- solution channel
    def request(self, msg: dict) -> Any:
        if self.dead:
            raise RemoteError(self.dead)
        try:
            wire.write_frame(PEER, msg)
            if self.pending and not select.select([PEER], [], [], FLUSH_AFTER_S)[0]:
                self.flush()  # a call that takes a while may hit the deadline: report what is decided first
            reply = wire.read_frame(PEER, self.max_message)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.dead = "the solution's process exited"
            raise RemoteError(self.dead) from None
        except wire.WireError as exc:
            self.dead = f"invalid reply from the solution: {exc}"
            raise RemoteError(self.dead) from None
        if type(reply) is not dict:
            raise RemoteError("invalid reply from the solution")
        return reply

    def value(self, reply: dict) -> Any:
        """The result a reply stands for: its decoded value, or the exception to raise in the tests."""
        if reply.get("t") == "ret":
            try:
                return wire.decode(reply.get("value"))
            except wire.WireError as exc:
                raise TypeError(f"the solution returned a value that is not plain data: {exc}") from None
        if reply.get("t") == "raise":
            name, text = str(reply.get("type", "Exception")), str(reply.get("msg", ""))[:2000]
            raise names.remote_exception(name, text, RemoteError)
        raise RemoteError("invalid reply from the solution")

    def call(self, fn: str, args: tuple, kwargs: dict) -> Any:
        """Call a solution function; the arguments it changed in place are written back (writeback.py)."""
        try:
            payload = {"t": "call", "fn": fn, "args": wire.encode(list(args)), "kw": wire.encode(dict(kwargs))}
        except wire.WireError as exc:
            raise TypeError(f"argument cannot be sent to the solution: {exc}") from None
        reply = self.request(payload)
        writeback.apply(args, kwargs, reply)
        return self.value(reply)

    def get(self, name: str) -> Any:
        return self.value(self.request({"t": "get", "name": name}))

    def handshake(self) -> dict:
        try:
            msg = wire.read_frame(PEER, self.max_message)
        except (EOFError, OSError, wire.WireError):
            self.dead = "the solution's process exited before it was loaded"
            return {}
        if type(msg) is dict and msg.get("t") == "ready" and type(msg.get("globals")) is dict:
            return msg["globals"]          # untrusted: names.allowed() decides what the tests may take from it
        if type(msg) is dict and msg.get("t") == "load_error":
            self.dead = f"the solution failed to load: {msg.get('type')}: {str(msg.get('msg'))[:500]}"
        else:
            self.dead = "invalid greeting from the solution"
        return {}

    # -------------------------------------------------------------------------------------- supervisor
    def report(self, msg: dict) -> None:
        """Queue a report. Queued reports go out when a call into the solution does not answer at once, so
        a deadline keeps every decided unit, and at the end; a fast test costs the supervisor one wake-up."""
        self.pending.append(msg)

    def flush(self) -> None:
        if self.pending:
            wire.write_frame(CTL, {"batch": self.pending})
            self.pending = []

    def unit_done(self, i: int, ok: bool, err: str = "") -> None:
        # Report the first success and the first failure of each unit; repeats add nothing.
        if ok and i in self.reported:
            return
        if not ok and self.reported.get(i) is False:
            return
        self.reported[i] = ok
        msg: dict = {"u": i, "ok": ok}
        if not ok and self.errors < 50:
            self.errors += 1
            msg["err"] = err[:500]
        self.report(msg)


class Proxy:
    """A function of the solution, callable from the tests."""

    def __init__(self, tester: Tester, name: str) -> None:
        self._tester, self._name = tester, name
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tester.call(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<solution function {self._name}>"


# ------------------------------------------------------------------------------------------ assert tests
def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


class _Instrument:
    def __init__(self) -> None:
        self.lines: list[int] = []

    def wrap(self, stmt: ast.stmt) -> list[ast.stmt]:
        i = len(self.lines)
        self.lines.append(stmt.lineno)
        src = (f"__sbx_begin__({i})\ntry:\n    pass\nexcept BaseException as __sbx_exc__:\n"
               f"    __sbx_fail__({i}, __sbx_exc__)\nfinally:\n    __sbx_end__({i})\n")
        begin, tri = ast.parse(src).body
        tri.body = [stmt]
        return [ast.copy_location(begin, stmt), ast.copy_location(tri, stmt)]

    def body(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in stmts:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or not _has_assert(s):
                out.append(s)
            else:
                out.extend(self.wrap(s))
        return out

    def module(self, tree: ast.Module) -> list[ast.stmt]:
        for s in tree.body:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                s.body = self.body(s.body)
        return self.body(tree.body)


def _bind_solution_names(tester: Tester, ns: dict, table: dict, free: list[str], entry_points: list) -> None:
    """Bind the names the tests may take from the solution (names.allowed) in `ns`, which already holds the
    tester's own hooks; a name that is bound stays bound."""
    if tester.dead:        # the solution did not load: its names fail with the reason, not a NameError
        for name in free:
            if name not in ns and name not in vars(builtins):
                ns[name] = Proxy(tester, name)
        return
    for name, kind in names.allowed(free, table, entry_points, set(ns)).items():
        if kind == "callable":
            ns[name] = Proxy(tester, name)
        elif kind == "data":
            try:
                ns[name] = tester.get(name)
            except Exception:
                pass
        else:
            try:
                ns[name] = importlib.import_module(kind[len("module:"):])
            except BaseException:                 # e.g. SystemExit from a module's import
                pass


def prepare(source: str, prelude: str = "") -> dict:
    """Parse, instrument and compile assert tests. The supervisor calls this (and caches the result per
    source) so the tester only unmarshals code objects; the tester falls back to it when given raw source."""
    inst = _Instrument()
    stmts = inst.module(ast.parse(source, "tests.py"))
    compiled = [compile(ast.Module(body=[s], type_ignores=[]), "tests.py", "exec", dont_inherit=True)
                for s in stmts]
    pre = compile(prelude, "prelude.py", "exec", dont_inherit=True) if prelude else None
    free = names.free_names((source, "tests.py"), (prelude, "prelude.py"))
    return {"total": max(len(inst.lines), 1), "whole": not inst.lines, "lines": inst.lines[:10000],
            "free": free, "code": base64.b64encode(marshal.dumps((compiled, pre))).decode("ascii")}


def _hooks(tester: Tester) -> dict:
    """The per-unit instrumentation the compiled tests call (`__sbx_begin__` etc.), as closures over a stack
    of open units. They are bound before the solution's greeting is read; no announced name can replace them."""
    stack: list[list] = []

    def begin(i: int) -> None:
        stack.append([i, None])

    def fail(i: int, exc: BaseException) -> None:
        for frame in reversed(stack):
            if frame[0] == i and frame[1] is None:
                frame[1] = exc
                break

    def end(i: int) -> None:
        while stack and stack[-1][0] != i:     # a unit left by an exception that skipped its `finally`
            stack.pop()
        exc = stack.pop()[1] if stack else None
        tester.unit_done(i, exc is None, "" if exc is None else _exc_text(exc))

    return {"__sbx_begin__": begin, "__sbx_fail__": fail, "__sbx_end__": end}


def _exit_ok(exc: SystemExit) -> bool:
    """Whether the tests' own sys.exit (e.g. `unittest.main()`'s) reports success, as a script's status would."""
    return exc.code is None or (type(exc.code) in (int, bool) and exc.code == 0)


def _execute(compiled: list, ns: dict, setup_errors: list[str]) -> None:
    """Run the compiled top-level statements in order; an exception outside a unit is recorded and the next
    statement runs; SystemExit ends the tests, as it ends a script (an error unless its status is 0)."""
    for code in compiled:
        try:
            exec(code, ns)
        except SystemExit as exc:
            if not _exit_ok(exc):
                setup_errors.append(_exc_text(exc))
            return
        except BaseException as exc:
            setup_errors.append(_exc_text(exc))


def run_assert(tester: Tester, spec: dict) -> None:
    prepared = spec.get("prepared") or prepare(spec["source"], spec.get("prelude", ""))
    tester.report({"total": prepared["total"], "lines": prepared["lines"]})
    compiled, pre = marshal.loads(base64.b64decode(prepared["code"]))
    main = types.ModuleType("__main__")            # unittest.main() looks for the tests in sys.modules
    ns = main.__dict__
    ns.update(__builtins__=builtins, **_hooks(tester))
    table = tester.handshake()
    setup_errors: list[str] = []
    _bind_solution_names(tester, ns, table, list(prepared["free"]), list(spec.get("entry_points") or []))
    saved_main, saved_argv = sys.modules.get("__main__"), sys.argv
    sys.modules["__main__"], sys.argv = main, ["tests.py"]
    try:
        if pre is not None:
            try:
                exec(pre, ns)      # trusted helpers (e.g. HumanEval's `poly`) override the solution's copies
            except BaseException as exc:
                setup_errors.append("prelude: " + _exc_text(exc))
        _execute(compiled, ns, setup_errors)
    finally:
        sys.argv = saved_argv
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
    if prepared["whole"]:
        tester.unit_done(0, not setup_errors, "; ".join(setup_errors[:3]))
    tester.report({"done": True, "setup_errors": setup_errors[:10]})


def _exc_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -------------------------------------------------------------------------------------------- call tests
def _listify(v: Any) -> Any:
    """JSON has no tuples: compare a returned tuple with an expected list as equal, recursively."""
    if type(v) in (list, tuple):
        return [_listify(x) for x in v]
    if type(v) is dict:
        return {k: _listify(x) for k, x in v.items()}
    return v


def _equal(got: Any, want: Any) -> bool:
    try:
        return bool(got == want)
    except Exception:                      # RecursionError on a pathological tree: not equal
        return False


def _numbers_close(got: int | float, want: int | float, tol: float) -> bool:
    """math.isclose(rel_tol=abs_tol=tol); for integers too large for a float, the same test done exactly."""
    try:
        return math.isclose(got, want, rel_tol=tol, abs_tol=tol)
    except OverflowError:
        pass
    try:
        g, w, t = Fraction(got), Fraction(want), Fraction(tol)
    except (OverflowError, ValueError):    # inf or nan next to a huge integer
        return False
    return abs(g - w) <= max(t * max(abs(g), abs(w)), t)


def close_enough(got: Any, want: Any, tol: float | None) -> bool:
    """Exact equality first (so huge integers and non-numbers never reach a float comparison); with `tol`,
    numbers (not bools) within tolerance also match, recursively through lists and dicts."""
    if _equal(got, want):
        return True
    if tol is None:
        return False
    if type(got) in (int, float) and type(want) in (int, float):
        return _numbers_close(got, want, tol)
    if type(got) is list and type(want) is list:
        return len(got) == len(want) and all(close_enough(g, w, tol) for g, w in zip(got, want))
    if type(got) is dict and type(want) is dict:
        return got.keys() == want.keys() and all(close_enough(got[k], want[k], tol) for k in got)
    return False


def run_call(tester: Tester, spec: dict) -> None:
    """Call tests; the supervisor sends each case's args, kwargs and expected value wire-encoded, so integer
    dict keys, sets, tuples and huge integers arrive as they were given."""
    cases = spec["cases"]
    tol = spec.get("float_tol")
    tester.report({"total": len(cases)})
    tester.handshake()
    for i, case in enumerate(cases):
        try:
            args, kwargs = wire.decode(case["args"]), wire.decode(case["kw"])
            want = _listify(wire.decode(case["expected"]))
            got = _listify(tester.call(spec["fn"], tuple(args), kwargs))
            ok = close_enough(got, want, tol)
            err = "" if ok else f"expected {_short(want)}, got {_short(got)}"
        except Exception as exc:
            ok, err = False, _exc_text(exc)
        tester.unit_done(i, ok, err)
    tester.report({"done": True, "setup_errors": []})


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 200 else text[:200] + "..."


def run_once() -> int:
    """One test run on descriptors 2 (stderr), 3 (reports) and 4 (the solution). 0, or 3 after an internal
    error (reported as such: a bug here is a sandbox fault, never a failed test)."""
    try:
        spec = wire.read_frame(CTL, 1 << 30)
        tester = Tester(int(spec.get("max_message_bytes", 4 << 20)))
        if spec["kind"] == "assert":
            run_assert(tester, spec)
        else:
            run_call(tester, spec)
        tester.flush()
        try:
            wire.write_frame(PEER, {"t": "bye"})
        except OSError:
            pass
        return 0
    except BaseException as exc:
        try:
            wire.write_frame(CTL, {"internal_error": f"{type(exc).__name__}: {exc}"})
        except BaseException:
            pass
        return 3


def main() -> None:
    """Entry point of a tester forked for a single run."""
    os._exit(run_once())


def serve(sock_fd: int, layers: list) -> None:
    """The long-lived tester of a worker. For each run the zygote sends the run's descriptors (stderr,
    report channel, solution channel) on `sock_fd`; every run gets fresh namespaces, and afterwards the
    built-ins and the set of imported modules are restored, so one run's tests cannot shape the next's.
    It answers with the run's exit code and CPU time. Forking a tester per run costs as much CPU as the
    solution's own process; the zygote replaces this one every RUNS_PER_TESTER runs and after any abnormal
    run, which bounds what a test that changes a module's attributes can leave behind."""
    sock = socket.socket(fileno=sock_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    b = vars(builtins)
    saved_builtins, saved_modules = dict(b), set(sys.modules)
    while True:
        data, fds, _, _ = socket.recv_fds(sock, 4096, 4)
        if not data or len(fds) != 3:
            os._exit(0)
        for target, fd in zip((2, CTL, PEER), fds):
            os.dup2(fd, target)
            os.close(fd)
        cpu0 = time.process_time()
        wire.write_frame(CTL, {"ev": "confined", "layers": layers})
        code = run_once()
        for target in (PEER, CTL, 2):
            os.dup2(devnull, target)
        for name in [k for k in b if k not in saved_builtins]:
            del b[name]
        for name, value in saved_builtins.items():
            if b.get(name) is not value:
                b[name] = value
        for name in [m for m in sys.modules if m not in saved_modules]:
            del sys.modules[name]
        sock.send(board.TESTER_REPORT.pack(code, time.process_time() - cpu0))
