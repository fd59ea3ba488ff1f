"""Which of the solution's names the tests may see, and which exceptions may cross from the solution.

The tester binds a name to something of the solution's only when the *test* asks for it: the name must be a
free global of the test source (or of its trusted prelude), read somewhere and bound nowhere in it. The
solution's process announces its globals (a table it fully controls: it can rewrite the runner, forge the
greeting, or walk its frames to it), so the announcement is checked against that allow-list and never widens
it. Dunder names (`__name__`, `__builtins__`, the tester's own `__sbx_*` hooks) are never free: found by
the second hostile corpus, a solution that announced `__sbx_fail__` as one of its functions swallowed every
failure and made `return None` pass all of HumanEval and MBPP.

Exceptions raised by the solution are re-raised in the tester by name, as built-in types, except those that
change the control flow of the test code around the call instead of failing it: a StopIteration raised by a
solution function silently ends the test's own iteration (`all(map(f, xs))` is `all([])`), so it becomes a
RuntimeError, as PEP 479 does for generators; StopAsyncIteration likewise. BaseException-only types
(SystemExit, KeyboardInterrupt, GeneratorExit, BaseExceptionGroup) and exception groups become RemoteError.
"""
from __future__ import annotations

import builtins
import symtable
import sys

# The solution names the modules it imported, so the tester imports them itself; it must not be able to make
# the tester run an arbitrary module's top-level code (unittest.__main__ would exit, antigravity opens a browser).
NO_IMPORT = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "webbrowser", "pydoc", "venv",
             "ensurepip", "lib2to3", "__hello__", "__phello__", "test", "unittest", "doctest", "pdb", "code",
             "site"}
KINDS = ("callable", "data")
_CONTROL_FLOW = {"StopIteration", "StopAsyncIteration"}
_NOT_MAPPED = {"ExceptionGroup"}           # its contents cannot cross; an `except*` must not match a shell
EXC_TYPES = {name: obj for name, obj in vars(builtins).items()
             if isinstance(obj, type) and issubclass(obj, Exception) and name not in _NOT_MAPPED}


def _bound_and_read(table: symtable.SymbolTable, bound: set[str], read: set[str]) -> None:
    module = table.get_type() == "module"
    for sym in table.get_symbols():
        name = sym.get_name()
        if sym.is_referenced() and sym.is_global():
            read.add(name)
        if (module and (sym.is_assigned() or sym.is_imported())) or (sym.is_declared_global() and sym.is_assigned()):
            bound.add(name)
    for child in table.get_children():
        _bound_and_read(child, bound, read)


def free_names(*sources: tuple[str, str]) -> list[str]:
    """Global names the sources (pairs of source text and file name) read but never bind, without dunders."""
    bound: set[str] = set()
    read: set[str] = set()
    for text, filename in sources:
        if text:
            _bound_and_read(symtable.symtable(text, filename, "exec"), bound, read)
    return sorted(n for n in read - bound if not (n.startswith("__") and n.endswith("__")) and n.isidentifier())


def importable(name: str, module: str) -> bool:
    """Whether the tester may import `module` for the test's free name `name`: a standard-library module
    (not one whose import has effects) whose top-level package or last component is that very name, so the
    solution cannot substitute another module for one the test uses (`math` -> `cmath`)."""
    parts = module.split(".")
    return (parts[0] in getattr(sys, "stdlib_module_names", ()) and parts[0] not in NO_IMPORT
            and all(p.isidentifier() and not p.startswith("__") for p in parts) and name in (parts[0], parts[-1]))


def allowed(free: list[str], table: dict, entry_points: list[str], taken: set[str]) -> dict[str, str]:
    """name -> announced kind, for the names the tests may take from the solution: free in the tests,
    announced with a known kind, not a built-in (unless an entry point: MBPP/126 tests a function called
    `sum`), and not already bound in the tests' namespace (the tester's hooks are bound first)."""
    shadow = set(vars(builtins)) - set(entry_points)
    out = {}
    for name in free:
        kind = table.get(name)
        if name in shadow or name in taken or type(kind) is not str:
            continue
        if kind in KINDS or (kind.startswith("module:") and importable(name, kind[len("module:"):])):
            out[name] = kind
    return out


def remote_exception(name: str, text: str, remote_error: type[Exception]) -> BaseException:
    """The exception to raise in the tests for one the solution raised (by type name and message)."""
    if name in _CONTROL_FLOW:
        return RuntimeError(f"the solution raised {name}: {text}" if text else f"the solution raised {name}")
    exc_type = EXC_TYPES.get(name)
    if exc_type is None:
        return remote_error(f"{name}: {text}")
    try:
        return exc_type(text)
    except TypeError:                 # UnicodeDecodeError and friends take five arguments
        exc = _text_only(exc_type).__new__(_text_only(exc_type))
        exc.args = (text,)
        return exc


_TEXT_ONLY: dict[type, type] = {}


def _text_only(exc_type: type) -> type:
    """A subclass of `exc_type` (same name, caught by the same `except`) whose message is just its text."""
    if exc_type not in _TEXT_ONLY:
        _TEXT_ONLY[exc_type] = type(exc_type.__name__, (exc_type,), {
            "__str__": lambda self: str(self.args[0]) if self.args else "", "__module__": "builtins"})
    return _TEXT_ONLY[exc_type]
