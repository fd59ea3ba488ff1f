"""The plain-data codec and framing: exact round trips, types that convert, and hostile input rejected."""
from __future__ import annotations

import collections
import math
import os
from decimal import Decimal
from fractions import Fraction

import pytest

from sandbox._inside import wire

PLAIN = [
    None, True, False, 0, -7, 2 ** 53, -(2 ** 80), 7 ** 6000, 1.5, -0.0, "", "héllo\n", [], [1, [2, [3]]],
    (), (1,), (1, (2, 3)), {"a": 1}, {1: "x", (2, 3): [4]}, set(), {1, 2}, frozenset({"a"}), b"\x00\xff",
    bytearray(b"ab"), 3 + 4j, Decimal("1.10"), Fraction(3, 7), range(2, 10, 3),
]


@pytest.mark.parametrize("value", PLAIN, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(PLAIN)])
def test_round_trip_is_exact(value):
    back = wire.decode(wire.encode(value))
    assert back == value
    assert type(back) is type(value)


def test_non_finite_floats():
    assert math.isnan(wire.decode(wire.encode(math.nan)))
    assert wire.decode(wire.encode(-math.inf)) == -math.inf
    # the frame itself is strict JSON (no NaN literals)
    assert b"NaN" not in wire.pack(wire.encode([math.nan, math.inf]))


def test_subclasses_and_iterators_become_plain():
    class Sneaky(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    dd = collections.defaultdict(int, {"a": 1})
    Point = collections.namedtuple("Point", "x y")
    assert type(wire.decode(wire.encode(Sneaky(5)))) is int
    assert wire.decode(wire.encode(Sneaky(5))) != 6
    assert type(wire.decode(wire.encode(dd))) is dict
    assert wire.decode(wire.encode(Point(1, 2))) == (1, 2)
    assert wire.decode(wire.encode(map(str, [1, 2]))) == ["1", "2"]
    assert wire.decode(wire.encode(x * x for x in range(3))) == [0, 1, 4]
    assert wire.decode(wire.encode({"k": 1}.keys())) == ["k"]


def test_unknown_objects_become_opaque_and_equal_nothing():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

        def __bool__(self):
            return True

    back = wire.decode(wire.encode(AlwaysEqual()))
    assert isinstance(back, wire.Opaque)
    assert bool(back) is True
    assert back != 1 and not (back == "anything") and back != back.text
    assert back == back


@pytest.mark.parametrize("tree", [
    {"t": 1}, {"zz": []}, {"d": [[1]]}, {"s": [[1, 2]]}, {"i": 5}, {"x": "huge"}, {"b": "!!"},
    {"t": [], "s": []}, {"o": ["T", "yes", "r"]}, {"c": [1]},
])
def test_malformed_trees_are_rejected(tree):
    with pytest.raises(wire.WireError):
        wire.decode(tree)


def test_depth_limit_on_both_sides():
    deep: list = []
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(wire.WireError):
        wire.encode(deep)
    with pytest.raises(wire.WireError):
        wire.decode(deep)


def test_frames_respect_the_size_cap():
    r, w = os.pipe()
    try:
        wire.write_frame(w, {"k": "x" * 100})
        with pytest.raises(wire.WireError, match="exceeds the cap"):
            wire.read_frame(r, 50)
    finally:
        os.close(r)
        os.close(w)


def test_frame_buffer_reassembles_split_frames():
    data = wire.pack({"a": 1}) + wire.pack([2, 3])
    buf = wire.FrameBuffer(1000)
    frames = []
    for i in range(len(data)):
        frames += buf.feed(data[i:i + 1])
    assert frames == [{"a": 1}, [2, 3]]
    with pytest.raises(wire.WireError):
        wire.FrameBuffer(10).feed(wire.pack("y" * 50))
    with pytest.raises(wire.WireError, match="malformed"):
        wire.FrameBuffer(100).feed(wire.HEADER.pack(3) + b"{{{")
