"""Token-budget micro-batches: budget, coverage, equal counts per rank, balance."""
from __future__ import annotations

import math
import random

import pytest

from reasoner.training.micro_batches import plan_micro_batches


def long_tailed(n: int, seed: int, low: int = 64, high: int = 4096) -> list[int]:
    rng = random.Random(seed)
    return [int(math.exp(rng.uniform(math.log(low), math.log(high)))) for _ in range(n)]


def check_invariants(plan, lengths, max_tokens, world_size, group_size=1, keep_groups=False):
    assert len(plan.ranks) == world_size
    assert len({len(r) for r in plan.ranks}) == 1, "every rank runs the same number of micro-batches"
    rows = sorted(i for rank in plan.ranks for mb in rank for i in mb)
    assert rows == list(range(len(lengths))), "every row exactly once"
    for rank, toks in zip(plan.ranks, plan.tokens):
        for mb, tok in zip(rank, toks):
            assert tok == sum(lengths[i] for i in mb)
            items = {i // group_size for i in mb} if keep_groups else set(mb)
            assert tok <= max_tokens or len(items) == 1, "over budget only for a single oversized item"
            assert mb == sorted(mb)
            if keep_groups:
                assert all(set(range(g * group_size, (g + 1) * group_size)) <= set(mb) for g in items)


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("seed", range(3))
def test_invariants_and_balance_long_tailed(world_size, seed):
    lengths = long_tailed(256, seed)
    max_tokens = 16384
    plan = plan_micro_batches(lengths, max_tokens, world_size)
    check_invariants(plan, lengths, max_tokens, world_size)
    lower_bound = math.ceil(sum(lengths) / max_tokens / world_size)
    assert plan.per_rank <= lower_bound + 1
    assert plan.imbalance < 1.05


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_whole_groups_are_kept_together(world_size):
    g = 8
    lengths = long_tailed(12 * g, seed=7)
    plan = plan_micro_batches(lengths, 20000, world_size, group_size=g, keep_groups=True)
    check_invariants(plan, lengths, 20000, world_size, group_size=g, keep_groups=True)
    assert plan.imbalance < 1.25


def test_oversized_rows_get_a_micro_batch_of_their_own():
    lengths = [5000, 100, 200, 4500, 50]
    plan = plan_micro_batches(lengths, 1000, world_size=2)
    check_invariants(plan, lengths, 1000, 2)
    alone = [mb for rank in plan.ranks for mb in rank if any(lengths[i] > 1000 for i in mb)]
    assert sorted(map(tuple, alone)) == [(0,), (3,)]


def test_fewer_rows_than_ranks_gives_empty_micro_batches():
    plan = plan_micro_batches([10, 20], 100, world_size=4)
    check_invariants(plan, [10, 20], 100, 4)
    assert plan.per_rank == 1 and sum(1 for rank in plan.ranks if rank[0] == []) == 2


def test_balanced_better_than_contiguous_split():
    """Against the naive split (consecutive rows, a fixed number of rows per micro-batch)."""
    lengths = long_tailed(128, seed=11)
    plan = plan_micro_batches(lengths, 32768, world_size=4)
    per_rank = [sum(lengths[i::4]) for i in range(4)]  # strided split, a common default
    naive = max(per_rank) / (sum(per_rank) / 4)
    assert plan.imbalance < naive


def test_one_rank_uses_about_as_many_micro_batches_as_first_fit_decreasing():
    lengths = long_tailed(200, seed=3)
    plan = plan_micro_batches(lengths, 8192)
    assert plan.per_rank <= math.ceil(sum(lengths) / 8192) + 2


@pytest.mark.parametrize("bad", [dict(max_tokens=0), dict(world_size=0), dict(group_size=3, keep_groups=True)])
def test_invalid_arguments(bad):
    kwargs = dict(lengths=[1, 2, 3, 4], max_tokens=10) | bad
    with pytest.raises(ValueError):
        plan_micro_batches(**kwargs)
