"""The solution's process: load the untrusted program, then either serve the tester's calls or run as a script.

Descriptors (arranged by the zygote): 0 stdin, 1 stdout, 2 stderr, 3 control channel to the supervisor (code
in, events out), 4 channel to the tester (function mode only).

Everything in this process may be rewritten by the program it loads, so nothing it says is trusted: the
tester decodes its answers as plain data, and the supervisor uses its events only to *explain* a failure
(e.g. `memory`), never to pass one.
"""
from __future__ import annotations

import atexit
import builtins
import io
import os
import sys
import threading
import traceback
import types
from typing import Any

from . import wire, writeback

CTL, PEER = 3, 4
CODE_CAP = 64 << 20
MODE = "pair"          # set by a pre-forked spare when it is handed a run


def _setup_stdio() -> None:
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "rb", closefd=False)), encoding="utf-8", errors="surrogateescape")
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "wb", closefd=False)), encoding="utf-8", errors="backslashreplace",
        newline="\n")
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "wb", closefd=False)), encoding="utf-8", errors="backslashreplace",
        newline="\n", line_buffering=True)
    sys.argv = ["solution.py"]


def _event(ev: dict) -> None:
    try:
        wire.write_frame(CTL, ev)
    except OSError:
        pass


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _print_exception(exc: BaseException) -> None:
    """Traceback as `python solution.py` would print it: without this runner's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "solution.py":
        tb = tb.tb_next
    try:
        traceback.print_exception(type(exc), exc, tb)
    except Exception:
        pass


def _describe(exc: BaseException) -> dict:
    try:
        msg = str(exc)[:2000]
    except Exception:
        msg = "<unprintable>"
    return {"type": type(exc).__name__, "msg": msg}


def _load(code: str, name: str) -> dict:
    ns: dict[str, Any] = {"__name__": name, "__builtins__": builtins}
    if name == "__main__":
        ns["__file__"] = "solution.py"
    # dont_inherit: the runner's own __future__ flags must not leak into the solution.
    exec(compile(code, "solution.py", "exec", dont_inherit=True), ns)
    return ns


def run_script() -> None:
    """stdin/stdout mode: run the program as `__main__`; exit status as CPython would set it."""
    run_main(wire.read_frame(CTL, CODE_CAP)["code"])


def run_main(code: str, program: types.CodeType | None = None) -> None:
    """Run `code` (or its compiled form `program`) as `__main__` on descriptors 0-2, then exit."""
    _setup_stdio()
    status = 0
    try:
        if program is None:
            _load(code, "__main__")
        else:
            exec(program, {"__name__": "__main__", "__builtins__": builtins, "__file__": "solution.py"})
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        if isinstance(exc, MemoryError):
            _event({"ev": "memory"})
        _print_exception(exc)
        status = 1
    try:
        threading._shutdown()          # join non-daemon threads, as the interpreter does at exit
        atexit._run_exitfuncs()
    except BaseException:
        pass
    _flush()
    os._exit(status)


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _globals_table(ns: dict) -> dict:
    table = {}
    for name, value in list(ns.items())[:5000]:
        if name.startswith("__"):
            continue
        if isinstance(value, types.ModuleType):
            table[name] = "module:" + str(getattr(value, "__name__", ""))
        elif callable(value):
            table[name] = "callable"
        else:
            table[name] = "data"
    return table


def _resolve(ns: dict, path: str) -> Any:
    parts = path.split(".")
    if parts[0] in ns:
        obj = ns[parts[0]]
    elif len(parts) == 1 and isinstance(ns.get("Solution"), type) and hasattr(ns["Solution"], path):
        return getattr(ns["Solution"](), path)          # LeetCode style: a method of class Solution
    else:
        raise NameError(f"name {parts[0]!r} is not defined")
    for attr in parts[1:]:
        if isinstance(obj, type):
            obj = obj()                                  # instantiate a class on the way to its method
        obj = getattr(obj, attr)
    return obj


def _answer(ns: dict, msg: dict) -> dict:
    """One reply to the tester: the value (or the exception), plus the arguments the call changed in place,
    also when it raised (writeback.py)."""
    if msg.get("t") == "get":
        try:
            return {"t": "ret", "value": wire.encode(ns[msg["name"]])}
        except BaseException as exc:
            return {"t": "raise", **_describe(exc)}
    args: Any = None
    kwargs: Any = None
    try:
        fn = _resolve(ns, msg["fn"])
        args = wire.decode(msg["args"])
        kwargs = wire.decode(msg.get("kw", {"d": []}))
        reply = {"t": "ret", "value": wire.encode(fn(*args, **kwargs))}
    except MemoryError as exc:
        _event({"ev": "memory"})
        reply = {"t": "raise", **_describe(exc)}
    except BaseException as exc:     # SystemExit in the function is a failed call, not an exit
        reply = {"t": "raise", **_describe(exc)}
    finally:
        _flush()
    try:
        for field, values, sent in (("args", args, msg.get("args")), ("kw", kwargs, msg.get("kw"))):
            if type(values) in (list, dict):
                moved = writeback.changed(sent, values)
                if moved:
                    reply[field] = moved
    except BaseException:            # e.g. MemoryError while encoding: the tests keep their copies
        pass
    return reply


def serve_calls() -> None:
    """Function mode: load the program, report its globals, then answer calls until the tester hangs up."""
    code = wire.read_frame(CTL, CODE_CAP)["code"]
    _setup_stdio()
    try:
        ns = _load(code, "solution")
    except BaseException as exc:
        if isinstance(exc, MemoryError):
            _event({"ev": "memory"})
        if not isinstance(exc, SystemExit):
            _print_exception(exc)
        _flush()
        wire.write_frame(PEER, {"t": "load_error", **_describe(exc)})
        os._exit(1)
    wire.write_frame(PEER, {"t": "ready", "globals": _globals_table(ns)})
    while True:
        try:
            msg = wire.read_frame(PEER, CODE_CAP)
        except (EOFError, OSError, wire.WireError):
            break
        if msg.get("t") == "bye":
            break
        wire.write_frame(PEER, _answer(ns, msg))
    _flush()
    os._exit(0)

