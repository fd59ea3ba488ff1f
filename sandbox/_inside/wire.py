"""Framing and the plain-data codec shared by the supervisor, the tester and the solution runner.

Frames are a 4-byte big-endian length followed by UTF-8 JSON. Every reader enforces a size cap, so a hostile
peer cannot make the reader allocate without bound.

Values that cross from the solution to the tester are *plain data* only. `encode` turns a Python value into
a tagged JSON tree; `decode` rebuilds it from exact built-in types (JSON arrays are lists; objects are always
tags: tuple, dict, set, frozenset, big int, non-finite float, complex, bytes, bytearray, Decimal, Fraction,
range). `decode` is what makes the verdict unforgeable: whatever the solution's process writes, the tester
only ever holds objects of these types, whose `__eq__` the solution cannot replace. `encode` runs in the
solution's process and is merely a convenience (it may be patched by the solution; that changes nothing).
Subclasses of plain types are converted to their base type and iterators are drained into lists, so
`defaultdict`, `OrderedDict`, named tuples, `map(...)` and generators compare as they would in-process. Any
other object becomes an `Opaque` stand-in that keeps only its truth value and a short repr.
"""
from __future__ import annotations

import base64
import json
import math
import os
import struct
from decimal import Decimal
from fractions import Fraction
from typing import Any

HEADER = struct.Struct(">I")
MAX_DEPTH = 200          # nesting depth accepted by encode/decode (the tester's stack stays small)
MAX_ITEMS = 10_000_000   # elements drained from one iterator
_SAFE_INT = 2 ** 53


class WireError(Exception):
    """A malformed, oversized or truncated frame, or a value that is not plain data."""


# ----------------------------------------------------------------------------------------------- framing
def pack(obj: Any) -> bytes:
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return HEADER.pack(len(body)) + body


def write_frame(fd: int, obj: Any) -> None:
    """Blocking write of one frame to a file descriptor (pipe or socket)."""
    data = memoryview(pack(obj))
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("peer closed the channel")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_bytes: int) -> Any:
    """Blocking read of one frame; EOFError at a clean end, WireError when over `max_bytes` or malformed."""
    head = _read_exact(fd, HEADER.size)
    (size,) = HEADER.unpack(head)
    if size > max_bytes:
        raise WireError(f"message of {size} bytes exceeds the cap of {max_bytes}")
    body = _read_exact(fd, size)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"malformed message: {exc}") from None


class FrameBuffer:
    """Incremental frame decoder for non-blocking readers (the supervisor's pump)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self.max_bytes:
                raise WireError(f"message of {size} bytes exceeds the cap of {self.max_bytes}")
            if len(self._buf) < HEADER.size + size:
                break
            body = bytes(self._buf[HEADER.size:HEADER.size + size])
            del self._buf[:HEADER.size + size]
            try:
                frames.append(json.loads(body))
            except (ValueError, RecursionError) as exc:
                raise WireError(f"malformed message: {exc}") from None
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


# ------------------------------------------------------------------------------------------------- codec
def _enc_float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return {"x": "nan" if x != x else ("inf" if x > 0 else "-inf")}


def _enc_int(x: int) -> Any:
    # Hex is not subject to the 4300-digit str<->int conversion limit and round-trips exactly.
    return x if -_SAFE_INT < x < _SAFE_INT else {"i": hex(x)}


def encode(obj: Any, depth: int = 0) -> Any:
    """Python value -> tagged JSON tree. Raises WireError for values that are not plain data."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    t = type(obj)
    if obj is None or t is bool or t is str:
        return obj
    if t is int:
        return _enc_int(obj)
    if t is float:
        return _enc_float(obj)
    if t is list:
        return [encode(v, depth + 1) for v in obj]
    if t is tuple:
        return {"t": [encode(v, depth + 1) for v in obj]}
    if t is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in obj.items()]}
    return _encode_other(obj, depth)


def _encode_other(obj: Any, depth: int) -> Any:
    # Order matters: bool before int, subclasses map to their plain base.
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return _enc_int(int(obj))
    if isinstance(obj, float):
        return _enc_float(float(obj))
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, complex):
        return {"c": [_enc_float(obj.real), _enc_float(obj.imag)]}
    if isinstance(obj, (bytes, bytearray)):
        tag = "ba" if isinstance(obj, bytearray) else "b"
        return {tag: base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, Decimal):
        return {"dec": str(obj)}
    if isinstance(obj, Fraction):
        return {"fr": [_enc_int(obj.numerator), _enc_int(obj.denominator)]}
    if isinstance(obj, range):
        return {"r": [_enc_int(obj.start), _enc_int(obj.stop), _enc_int(obj.step)]}
    if isinstance(obj, tuple):
        return {"t": [encode(v, depth + 1) for v in obj]}
    if isinstance(obj, list):
        return [encode(v, depth + 1) for v in obj]
    if isinstance(obj, dict):
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(obj)]}
    if isinstance(obj, frozenset):
        return {"f": [encode(v, depth + 1) for v in obj]}
    if isinstance(obj, set):
        return {"s": [encode(v, depth + 1) for v in obj]}
    if hasattr(obj, "tolist") and callable(obj.tolist):      # numpy arrays and scalars, when importable
        return encode(obj.tolist(), depth + 1)
    if hasattr(obj, "__next__") or type(obj).__name__ in ("dict_keys", "dict_values", "dict_items"):
        return [encode(v, depth + 1) for v in _drain(obj)]
    return {"o": [type(obj).__name__[:100], _truth(obj), _repr(obj)]}


def _truth(obj: Any) -> bool:
    try:
        return bool(obj)
    except Exception:
        return False


def _repr(obj: Any) -> str:
    try:
        return repr(obj)[:200]
    except Exception:
        return "<unprintable>"


class Opaque:
    """Stands in for a returned object that is not plain data (a regex match, an instance of the solution's
    class). It keeps the truth value the solution reported, so `assert f(x)` behaves as in-process, and it
    equals nothing but itself, so no comparison with it can pass."""

    __slots__ = ("type_name", "truth", "text")

    def __init__(self, type_name: str, truth: bool, text: str) -> None:
        self.type_name, self.truth, self.text = type_name, truth, text

    def __bool__(self) -> bool:
        return self.truth

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{self.type_name} from the solution: {self.text}>"


def _drain(it: Any) -> list:
    out = []
    for v in it:
        if len(out) >= MAX_ITEMS:
            raise WireError(f"iterator yields more than {MAX_ITEMS} items")
        out.append(v)
    return out


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _dec_int(v: Any) -> int:
    if type(v) is int:
        return v
    if type(v) is dict and set(v) == {"i"} and type(v["i"]) is str:
        return int(v["i"], 16)
    raise WireError("malformed integer")


def _dec_float(v: Any) -> float:
    if type(v) in (int, float):
        return float(v)
    if type(v) is dict and set(v) == {"x"} and v["x"] in _NONFINITE:
        return _NONFINITE[v["x"]]
    raise WireError("malformed float")


def decode(tree: Any, depth: int = 0) -> Any:
    """Tagged JSON tree -> value built only from exact built-in types (never calls into foreign code)."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    t = type(tree)
    if tree is None or t in (bool, int, float, str):
        return tree
    if t is list:
        return [decode(v, depth + 1) for v in tree]
    if t is not dict or len(tree) != 1:
        raise WireError("malformed value")
    (tag, v), = tree.items()
    try:
        return _decode_tag(tag, v, depth)
    except (TypeError, ValueError, ArithmeticError) as exc:      # unhashable set member, bad base64, ...
        raise WireError(f"malformed {tag!r} value: {exc}") from None


def _decode_tag(tag: str, v: Any, depth: int) -> Any:
    if tag == "t":
        return tuple(decode(x, depth + 1) for x in _as_list(v))
    if tag == "d":
        out = {}
        for pair in _as_list(v):
            if type(pair) is not list or len(pair) != 2:
                raise WireError("malformed dict item")
            out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
        return out
    if tag == "s":
        return {decode(x, depth + 1) for x in _as_list(v)}
    if tag == "f":
        return frozenset(decode(x, depth + 1) for x in _as_list(v))
    if tag == "i":
        return _dec_int(tree_of(tag, v))
    if tag == "x":
        return _dec_float(tree_of(tag, v))
    if tag == "c":
        re_, im = _as_list(v, 2)
        return complex(_dec_float(re_), _dec_float(im))
    if tag in ("b", "ba"):
        if type(v) is not str:
            raise WireError("malformed bytes")
        raw = base64.b64decode(v.encode("ascii"), validate=True)
        return raw if tag == "b" else bytearray(raw)
    if tag == "dec":
        if type(v) is not str:
            raise WireError("malformed Decimal")
        return Decimal(v)
    if tag == "fr":
        num, den = _as_list(v, 2)
        return Fraction(_dec_int(num), _dec_int(den))
    if tag == "r":
        a, b, c = _as_list(v, 3)
        return range(_dec_int(a), _dec_int(b), _dec_int(c))
    if tag == "o":
        name, truth, text = _as_list(v, 3)
        if type(name) is not str or type(truth) is not bool or type(text) is not str:
            raise WireError("malformed opaque value")
        return Opaque(name[:100], truth, text[:200])
    raise WireError(f"unknown tag {tag!r}")


def tree_of(tag: str, v: Any) -> dict:
    return {tag: v}


def _as_list(v: Any, n: int | None = None) -> list:
    if type(v) is not list or (n is not None and len(v) != n):
        raise WireError("malformed container")
    return v
