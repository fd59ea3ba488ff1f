"""Argument write-back: a call into the solution mutates the test's arguments as an in-process call would.

Arguments cross to the solution's process as copies. After each call the solution's runner re-encodes the
arguments that can change in place (lists, dicts, sets, bytearrays, and tuples that may hold them) and sends
back those whose encoding differs from what it received (`changed`); the tester then updates its own objects
in place (`apply`), keeping the identity of every container whose kind did not change. So "sort nums in
place" passes a test that checks `nums` afterwards, and a function that empties its argument fails a test
that checks the argument is unchanged.

What the solution reports is untrusted, and that is sound: in process, a function can set a mutable argument
to any value at all; here it can set it only to plain data, and never replace an immutable argument, change
a container's type, or reach anything the test did not pass. Not preserved: aliasing between arguments (an
object passed twice, or reachable twice, arrives as two copies; the last write-back wins).
"""
from __future__ import annotations

from typing import Any

from . import wire

_MUTABLE = (list, dict, set, bytearray, tuple)


def changed(sent: Any, values: list | dict) -> dict | None:
    """In the solution's process: {position or keyword: new tree} for each argument whose encoding changed,
    or None. `sent` is the tree that was received (a list for positional arguments, a "d" tag for keywords)."""
    if type(values) is dict:
        pairs = sent.get("d", []) if type(sent) is dict else []
        old = {k: v for k, v in pairs if type(k) is str}
        items = values.items()
    else:
        old = dict(enumerate(sent)) if type(sent) is list else {}
        items = enumerate(values)
    out = {}
    for key, value in items:
        if not _may_change(value):
            continue
        try:
            tree = wire.encode(value)
        except (wire.WireError, RecursionError):
            continue                              # cannot be represented: the test keeps its copy
        if tree != old.get(key):
            out[str(key)] = tree
    return out or None


def _may_change(value: Any) -> bool:
    t = type(value)
    return t in (list, dict, set, bytearray) or (t is tuple and any(_may_change(v) for v in value))


def apply(args: tuple, kwargs: dict, reply: dict) -> None:
    """In the tester: update the test's argument objects from a reply's "args" / "kw" maps."""
    for field, target in (("args", args), ("kw", kwargs)):
        updates = reply.get(field)
        if type(updates) is not dict:
            continue
        for key, tree in updates.items():
            obj = _target(target, key)
            if obj is None:
                continue
            try:
                sync(obj, wire.decode(tree))
            except (wire.WireError, RecursionError):
                pass                              # a malformed update changes nothing


def _target(target: tuple | dict, key: Any) -> Any:
    if type(key) is not str:
        return None
    if type(target) is dict:
        return target.get(key)
    if key.isdigit() and int(key) < len(target):
        return target[int(key)]
    return None


def sync(old: Any, new: Any) -> None:
    """Make `old` equal to `new` where Python allows it in place; nested containers keep their identity."""
    if type(old) is list and type(new) is list:
        for i in range(min(len(old), len(new))):
            old[i] = _merged(old[i], new[i])
        del old[len(new):]
        old.extend(new[len(old):])
    elif type(old) is dict and type(new) is dict:
        merged = {k: _merged(old[k], v) if k in old else v for k, v in new.items()}
        old.clear()
        old.update(merged)
    elif type(old) is set and type(new) is set:
        if old != new:
            old.clear()
            old.update(new)
    elif type(old) is bytearray and type(new) is bytearray:
        old[:] = new
    elif type(old) is tuple and type(new) is tuple and len(old) == len(new):
        for o, n in zip(old, new):                # the tuple cannot change, the containers in it can
            if type(o) in _MUTABLE:
                sync(o, n)


def _merged(old: Any, new: Any) -> Any:
    """What to store in a container's slot: `old` itself, updated, when it is the same kind of container (a
    tuple only if that makes it equal: its other members cannot change, but the slot can take a new tuple)."""
    if type(old) is type(new) and type(old) in _MUTABLE:
        sync(old, new)
        if type(old) is not tuple or old == new:
            return old
    return new
