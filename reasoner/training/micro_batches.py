"""Token-budget micro-batches, balanced across data-parallel ranks.

A micro-batch counted in sequences is not a unit of work when answer lengths range from 64 to 4,096 tokens: a
fixed `micro_batch_size` either wastes memory on short answers or runs out of it on long ones. Here rows are
bin-packed into micro-batches of at most `max_tokens` tokens (what a packed forward processes), and the
micro-batches are dealt to `world_size` ranks so that every rank runs the same number of them (DDP and ZeRO need
the same number of forward/backward passes on every rank) with about the same number of tokens.

Algorithm: the number of micro-batches per rank starts at the lower bound `ceil(first-fit-decreasing bins /
world_size)`; items (rows, or whole groups when `keep_groups`) are placed largest first into the least-loaded
micro-batch that still has room (longest-processing-time scheduling under a capacity), and the count grows by one
per rank while an item does not fit. The micro-batches are then dealt largest first to the least-loaded rank that
has fewer than its share. An item larger than the budget gets a micro-batch of its own.

Simplifications: the work of a micro-batch is its token count (attention's quadratic term is ignored: at the
target shapes the MLP and the head dominate); a micro-batch may be empty when there are fewer items than
`world_size` x micro-batches (the trainer then runs a padding pass, as `pad_rows` does for rows).
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MicroBatchPlan:
    """`ranks[r][k]` = the row indices (ascending) of rank r's k-th micro-batch."""

    ranks: list[list[list[int]]]
    tokens: list[list[int]]          # [world_size][per_rank] tokens of each micro-batch

    @property
    def per_rank(self) -> int:
        return len(self.ranks[0]) if self.ranks else 0

    @property
    def imbalance(self) -> float:
        """max rank tokens / mean rank tokens (1.0 = perfect)."""
        loads = [sum(t) for t in self.tokens]
        mean = sum(loads) / max(len(loads), 1)
        return max(loads) / mean if mean else 1.0


def _first_fit_decreasing(costs: Sequence[int], capacity: int) -> int:
    """How many bins first-fit-decreasing needs (an oversized item takes a bin of its own)."""
    free: list[int] = []
    for c in sorted(costs, reverse=True):
        for i, room in enumerate(free):
            if c <= room:
                free[i] -= c
                break
        else:
            free.append(capacity - c)
    return len(free)


def _fill(costs: list[int], order: list[int], bins: int, capacity: int) -> list[list[int]] | None:
    """Items (largest first) into the least-loaded bin with room; None if some item fits nowhere."""
    members: list[list[int]] = [[] for _ in range(bins)]
    loads = [0] * bins
    for item in order:
        c = costs[item]
        best = -1
        for b in range(bins):
            fits = loads[b] + c <= capacity or (loads[b] == 0 and c > capacity)
            if fits and (best < 0 or loads[b] < loads[best]):
                best = b
        if best < 0:
            return None
        members[best].append(item)
        loads[best] += c
    return members


def plan_micro_batches(lengths: Sequence[int], max_tokens: int, world_size: int = 1, group_size: int = 1, *,
                       keep_groups: bool = False) -> MicroBatchPlan:
    """Split rows of `lengths` tokens into micro-batches of at most `max_tokens`, the same number per rank.

    Args:
        lengths: tokens each row costs in the forward pass (for a packed forward with shared prompts: the response
            length, plus the prompt length on the first row of each group only).
        max_tokens: the budget per micro-batch; exceeded only by a micro-batch holding one item larger than it.
        world_size: data-parallel ranks; each gets the same number of micro-batches.
        group_size: rows per group (the G completions of a prompt, contiguous).
        keep_groups: place whole groups (needed for shared-prompt packing); `len(lengths)` must be a multiple of
            `group_size`.
    """
    if max_tokens < 1 or world_size < 1 or group_size < 1:
        raise ValueError(f"max_tokens, world_size and group_size must be >= 1, got {max_tokens}, {world_size}, "
                         f"{group_size}")
    if any(n < 0 for n in lengths):
        raise ValueError("lengths must be >= 0")
    g = group_size if keep_groups else 1
    if len(lengths) % g:
        raise ValueError(f"{len(lengths)} rows are not whole groups of {g}")
    items = [list(range(i, i + g)) for i in range(0, len(lengths), g)]
    costs = [sum(lengths[r] for r in rows) for rows in items]
    order = sorted(range(len(items)), key=lambda i: (-costs[i], i))
    per_rank = max(1, -(-_first_fit_decreasing(costs, max_tokens) // world_size))
    while (members := _fill(costs, order, per_rank * world_size, max_tokens)) is None:
        per_rank += 1
    loads = [sum(costs[i] for i in m) for m in members]
    # deal micro-batches (largest first) to the least-loaded rank that still has room for one
    heap = [(0, r) for r in range(world_size)]
    ranks: list[list[list[int]]] = [[] for _ in range(world_size)]
    tokens: list[list[int]] = [[] for _ in range(world_size)]
    for b in sorted(range(len(members)), key=lambda b: (-loads[b], b)):
        load, r = heapq.heappop(heap)
        ranks[r].append(sorted(row for i in members[b] for row in items[i]))
        tokens[r].append(loads[b])
        if len(ranks[r]) < per_rank:
            heapq.heappush(heap, (load + loads[b], r))
    return MicroBatchPlan(ranks=ranks, tokens=tokens)
