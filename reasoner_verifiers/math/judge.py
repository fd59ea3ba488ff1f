"""Compare a gold answer tree with a predicted one, tier by tier.

The same function runs twice at most: first in the caller's process with only the cheap tiers (normalised
string, exact numbers); when a leaf needs symbolic mathematics the cheap pass raises `NeedsHeavy` and the pair
is sent to a worker process, which runs this function again with a `heavy` leaf comparator (sympy). A cheap
tier that can *decide* a leaf decides it for good: `\\frac{1}{2004!}` against `\\frac{1}{2006!}` is an exact
rational comparison, and a `wrong` found in one element of a tuple makes the whole tuple wrong without sympy.

Modes:
- `strict` (RL rewards): percent signs must agree (`50` ≠ `50\\%`), a tuple must come back as a tuple with the
  same brackets and in order, assignments must name the same variable, decimals within 1e-6 relative.
- `lenient` (evaluation): `50\\%` ≡ `50` ≡ `0.5`, a bare list may stand for a tuple or a column vector (order
  still matters), and the variable name of an assignment is ignored.
Both modes: order inside tuples matters; sets, bare lists ("all solutions") and unions are unordered; decimals
match within 1e-6 relative (option `rel_tol`). Not Qwen2.5-Math's 1e-4: on its own labelled completions that
would accept `9999.857142857143` for 10000. Not math-verify's non-strict variable renaming either: it makes
any two single symbols equal (`A` ≡ `C`).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction

from .exact import Exact, close, evaluate, is_exact_integer
from .normalize import Group, Leaf, Node
from .screen import clearly_different

YES, NO, UNKNOWN, UNPARSABLE = "yes", "no", "unknown", "unparsable"
MODES = ("strict", "lenient")
TIERS = ("string", "exact", "float", "screen", "structure", "sympy", "numeric")


@dataclass(frozen=True)
class CompareConfig:
    mode: str = "strict"
    rel_tol: float | None = None  # None: 1e-6
    bare_gold: bool = False       # the gold is a bare final number (GSM8K): a percent sign on the answer is
                                  # the question's unit, not held against it (`18%` for gold 18)

    def to_wire(self) -> list:
        return [self.mode, self.rel_tol, self.bare_gold]

    @classmethod
    def from_wire(cls, data: list) -> CompareConfig:
        mode, rel_tol, bare_gold = data
        return cls(str(mode), None if rel_tol is None else float(rel_tol), bool(bare_gold))

    @property
    def strict(self) -> bool:
        return self.mode == "strict"

    @property
    def tolerance(self) -> float:
        return 1e-6 if self.rel_tol is None else self.rel_tol


# heavy(gold_text, pred_text, gold_percent, pred_percent, cfg) -> (YES | NO | UNPARSABLE, tier)
HeavyJudge = Callable[[str, str, bool, bool, CompareConfig], "tuple[str, str]"]


class NeedsHeavy(Exception):
    """The cheap tiers cannot decide this pair; send it to a worker."""


@dataclass
class Verdict:
    status: str           # correct | wrong | parse_error
    tier: str             # the most expensive tier that took part
    reason: str = ""


@dataclass
class _Trace:
    tiers: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)
    deadline: float | None = None  # monotonic time after which the cheap pass gives up (NeedsHeavy)

    def child(self) -> _Trace:
        return _Trace(deadline=self.deadline)

    def check_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise NeedsHeavy()

    def note(self, tier: str, reason: str = "") -> None:
        self.tiers.add(tier)
        if reason and len(self.reasons) < 3:
            self.reasons.append(reason)


def judge(gold: Node, pred: Node, cfg: CompareConfig, heavy: HeavyJudge | None = None,
          time_limit_s: float | None = None) -> Verdict:
    """Decide a pair. Without `heavy` (the caller's process), raises NeedsHeavy when a leaf needs sympy, or
    when the cheap tiers have run `time_limit_s` (every tier in between is bounded; this caps their sum, so
    a crafted answer costs the caller at most that before a worker, with its killable deadline, takes it)."""
    deadline = None if heavy is not None or time_limit_s is None else time.monotonic() + time_limit_s
    trace = _Trace(deadline=deadline)
    result = _compare(gold, pred, cfg, heavy, trace)
    if result == UNKNOWN:
        raise NeedsHeavy()
    status = {YES: "correct", NO: "wrong", UNPARSABLE: "parse_error"}[result]
    tier = max(trace.tiers, key=TIERS.index) if trace.tiers else "structure"
    return Verdict(status, tier, "; ".join(trace.reasons))


def _compare(g: Node, p: Node, cfg: CompareConfig, heavy: HeavyJudge | None, trace: _Trace) -> str:
    if isinstance(g, Leaf) and isinstance(p, Leaf):
        return _leaf(g, p, cfg, heavy, trace)
    if isinstance(g, Leaf) or isinstance(p, Leaf):
        group = p if isinstance(p, Group) else g
        single = g if isinstance(g, Leaf) else p
        assert isinstance(group, Group)
        if group.kind in ("list", "set") and len(group.items) == 1:  # `\{5\}` is `5`
            a, b = (single, group.items[0]) if single is g else (group.items[0], single)
            return _compare(a, b, cfg, heavy, trace)
        trace.note("structure", f"{'gold' if group is g else 'answer'} is a {group.kind}, the other a single value")
        return NO
    assert isinstance(g, Group) and isinstance(p, Group)
    unordered = ("list", "set", "union")
    if g.kind in ("list", "set") and p.kind in ("list", "set", "tuple") or g.kind == p.kind == "union":
        return _unordered(g.items, p.items, cfg, heavy, trace)
    if g.kind == "tuple" and p.kind == "tuple":
        if g.brackets != p.brackets:
            trace.note("structure", f"brackets {g.brackets} vs {p.brackets}")
            return NO
        return _ordered(g.items, p.items, cfg, heavy, trace)
    if g.kind == "matrix" and p.kind == "matrix":
        if g.shape != p.shape:
            trace.note("structure", f"matrix shape {g.shape} vs {p.shape}")
            return NO
        return _ordered(g.items, p.items, cfg, heavy, trace)
    if not cfg.strict and p.kind == "list" and (g.kind == "tuple" or g.kind == "matrix" and 1 in g.shape):
        return _ordered(g.items, p.items, cfg, heavy, trace)
    if not cfg.strict and g.kind == "matrix" and 1 in g.shape and p.kind == "tuple":
        return _ordered(g.items, p.items, cfg, heavy, trace)
    order = " (order matters)" if p.kind in unordered else ""
    trace.note("structure", f"gold is a {g.kind}, answer a {p.kind}{order}")
    return NO


def _ordered(gs: tuple[Node, ...], ps: tuple[Node, ...], cfg, heavy, trace: _Trace) -> str:
    if len(gs) != len(ps):
        trace.note("structure", f"{len(gs)} items vs {len(ps)}")
        return NO
    results = []
    for g, p in zip(gs, ps):
        r = _compare(g, p, cfg, heavy, trace)
        if r == NO:
            return NO
        results.append(r)
    return _combine(results)


def _combine(results: list[str]) -> str:
    for outcome in (UNKNOWN, UNPARSABLE):
        if outcome in results:
            return outcome
    return YES


def _unordered(gs: tuple[Node, ...], ps: tuple[Node, ...], cfg, heavy, trace: _Trace) -> str:
    """A perfect matching of gold items to answer items (Kuhn's algorithm over lazily compared pairs).

    First with the cheap tiers only (a permuted list of surds matches by string, no sympy call), then, if that
    leaves the matching open and a heavy comparator is available, with it for the undecided pairs. Each pair
    keeps its own trace; the verdict reports the tiers of the matched pairs (or of all, when none matches).
    """
    if len(gs) != len(ps):
        trace.note("structure", f"{len(gs)} items vs {len(ps)}")
        return NO
    cheap: dict[tuple[int, int], tuple[str, _Trace]] = {}
    full: dict[tuple[int, int], tuple[str, _Trace]] = {}

    def cheap_edge(i: int, j: int) -> str:
        if (i, j) not in cheap:
            t = trace.child()
            cheap[(i, j)] = (_compare(gs[i], ps[j], cfg, None, t), t)
        return cheap[(i, j)][0]

    def full_edge(i: int, j: int) -> str:
        result = cheap_edge(i, j)
        if result != UNKNOWN or heavy is None:
            return result
        if (i, j) not in full:
            t = trace.child()
            full[(i, j)] = (_compare(gs[i], ps[j], cfg, heavy, t), t)
        return full[(i, j)][0]

    def merge(pairs) -> None:
        for i, j in pairs:
            t = (full.get((i, j)) or cheap[(i, j)])[1]
            for tier in t.tiers:
                trace.note(tier)
            for reason in t.reasons:
                trace.note("structure", reason)

    for edge in (cheap_edge, full_edge) if heavy is not None else (cheap_edge,):
        matching = _perfect_matching(len(gs), len(ps), edge)
        if matching is not None:
            merge(matching)
            return YES
    rows = [[full_edge(i, j) for j in range(len(ps))] for i in range(len(gs))]
    merge([(i, j) for i in range(len(gs)) for j in range(len(ps))])
    if any(all(r == NO for r in row) for row in rows) or any(
        all(rows[i][j] == NO for i in range(len(gs))) for j in range(len(ps))
    ):
        return NO
    flat = [r for row in rows for r in row]
    if UNKNOWN in flat:
        return UNKNOWN
    return UNPARSABLE if UNPARSABLE in flat else NO


def _perfect_matching(n_gold: int, n_pred: int, edge: Callable[[int, int], str]) -> list[tuple[int, int]] | None:
    """The matched (gold, answer) pairs when every gold item can be matched through YES edges, else None."""
    match_of_pred: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j in range(n_pred):
            if j in seen or edge(i, j) != YES:
                continue
            seen.add(j)
            if j not in match_of_pred or augment(match_of_pred[j], seen):
                match_of_pred[j] = i
                return True
        return False

    if all(augment(i, set()) for i in range(n_gold)):
        return [(i, j) for j, i in match_of_pred.items()]
    return None


def _leaf(g: Leaf, p: Leaf, cfg: CompareConfig, heavy: HeavyJudge | None, trace: _Trace) -> str:
    trace.check_time()
    if cfg.bare_gold and p.percent and not g.percent:
        p = replace(p, percent=False)
    if g.is_text or p.is_text:
        same = g.value.lower() == p.value.lower()
        trace.note("string", "" if same else "text answers differ")
        return YES if same else NO
    if cfg.strict and g.percent != p.percent:
        trace.note("structure", "percent sign on one side only")
        return NO
    sides = _sides(g, p, cfg, trace)
    if sides is None:
        return NO
    gv, pv, relation = sides
    if gv == pv:
        trace.note("string")
        return YES
    if not relation:
        eg, ep = evaluate(gv), evaluate(pv)
        if eg is not None and ep is not None:
            ok = _numbers_close(eg, ep, g.percent, p.percent, cfg)
            trace.note("float" if (eg.approximate or ep.approximate) and eg.value != ep.value else "exact")
            return YES if ok else NO
        if g.percent == p.percent:
            # decimals carry the comparison tolerance; exact expressions (and integer golds) only 30-digit
            # rounding noise
            exact_gold = eg is not None and is_exact_integer(eg)
            tol = cfg.tolerance if ("." in gv or "." in pv) and not exact_gold else 1e-20
            if clearly_different(gv, pv, tol):
                trace.note("screen")
                return NO
    if heavy is None:
        return UNKNOWN
    result, tier = heavy(gv, pv, g.percent, p.percent, cfg)
    trace.note(tier)
    return result


def _sides(g: Leaf, p: Leaf, cfg: CompareConfig, trace: _Trace) -> tuple[str, str, bool] | None:
    """What to compare: values of assignments (`x=5` vs `5`), whole texts when a side is a real relation."""
    if g.lhs is not None and p.lhs is not None:
        if cfg.strict and g.lhs != p.lhs:
            trace.note("structure", f"assigns {p.lhs}, gold assigns {g.lhs}")
            return None
        return g.value, p.value, False
    if g.is_relation or p.is_relation:
        return g.text, p.text, True
    return g.value, p.value, False


def _numbers_close(g: Exact, p: Exact, g_pct: bool, p_pct: bool, cfg: CompareConfig) -> bool:
    # An integer gold is exact, in both modes: a relative tolerance would let `1000000008.0` pass for
    # 1000000007 (strict) and `$1,000,000.50` for 1000000 (lenient). Other golds: `rel_tol` when a side is a
    # decimal (exact.close).
    tol = 0.0 if is_exact_integer(g) else cfg.tolerance
    if close(g, p, tol):
        return True
    if cfg.strict or g_pct == p_pct:
        return False
    hundredth = Fraction(1, 100)
    g2 = Exact(g.value * hundredth, g.approximate) if g_pct else g
    p2 = Exact(p.value * hundredth, p.approximate) if p_pct else p
    return close(g2, p2, tol)
