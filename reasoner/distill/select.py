"""Rejection-sampling rules over graded teacher samples: filter, deduplicate, select, cap. Pure functions.

Order: `filter_candidates` (the verifiers' verdict, optionally the R1 format, optionally no truncated samples)
-> `dedupe` (the same response to the same prompt counts once, whitespace-insensitive) -> `select_per_prompt`
(`all`, `shortest` correct — Kimi k1.5's long-to-short selection — or one at `random`) -> `cap_rows` (a seeded
random subset, e.g. to match another data set's size). Every rejection is counted by reason.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

ACCEPT = ("verified", "all")
SELECT = ("all", "shortest", "random")


@dataclass(frozen=True)
class Candidate:
    prompt_id: str
    sample_index: int
    response: str
    num_tokens: int
    correct: bool
    truncated: bool
    format_ok: bool | None = None       # None: no format verdict available
    status: str = ""                    # the primary verifier's status (rejection reason)
    reward: float = 0.0


@dataclass
class Selection:
    kept: list[Candidate]
    rejected: Counter = field(default_factory=Counter)  # reason -> count


def filter_candidates(cands: Sequence[Candidate], *, accept: str = "verified", require_format: bool = False,
                      drop_truncated: bool = True) -> Selection:
    """Keep what passes; a rejected sample is counted under its first failing reason."""
    if accept not in ACCEPT:
        raise ValueError(f"accept must be one of {', '.join(ACCEPT)}; got {accept!r}")
    out = Selection(kept=[])
    for c in cands:
        if drop_truncated and c.truncated:
            out.rejected["truncated"] += 1
        elif accept == "verified" and not c.correct:
            out.rejected[c.status or "wrong"] += 1
        elif require_format and c.format_ok is not True:
            out.rejected["format"] += 1
        else:
            out.kept.append(c)
    return out


def dedupe(cands: Sequence[Candidate]) -> Selection:
    """Drop repeated (prompt, response) pairs, comparing responses with whitespace collapsed; first one wins."""
    seen: set[tuple[str, str]] = set()
    out = Selection(kept=[])
    for c in cands:
        key = (c.prompt_id, " ".join(c.response.split()))
        if key in seen:
            out.rejected["duplicate"] += 1
            continue
        seen.add(key)
        out.kept.append(c)
    return out


def select_per_prompt(cands: Sequence[Candidate], rule: str, rng: random.Random,
                      max_per_prompt: int = 0) -> list[Candidate]:
    """`all` (the first `max_per_prompt` by sample index when > 0), `shortest` (ties: lowest index), `random`."""
    if rule not in SELECT:
        raise ValueError(f"select must be one of {', '.join(SELECT)}; got {rule!r}")
    groups: dict[str, list[Candidate]] = {}
    for c in cands:
        groups.setdefault(c.prompt_id, []).append(c)
    out: list[Candidate] = []
    for group in groups.values():
        group = sorted(group, key=lambda c: c.sample_index)
        if rule == "all":
            out.extend(group[:max_per_prompt] if max_per_prompt > 0 else group)
        elif rule == "shortest":
            out.append(min(group, key=lambda c: (c.num_tokens, c.sample_index)))
        else:
            out.append(rng.choice(group))
    return out


def cap_rows(cands: Sequence[Candidate], max_rows: int, rng: random.Random) -> list[Candidate]:
    """A random subset of `max_rows` (order kept), or everything when `max_rows` <= 0 or there are fewer."""
    if max_rows <= 0 or len(cands) <= max_rows:
        return list(cands)
    keep = set(rng.sample(range(len(cands)), max_rows))
    return [c for i, c in enumerate(cands) if i in keep]
