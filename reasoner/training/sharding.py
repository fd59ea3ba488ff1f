"""How one GRPO step's work is split over data-parallel ranks, and what they exchange.

- Prompts: every rank draws the same global batch from the (identically seeded) sampler and takes a contiguous
  slice of it, so each prompt's G completions live on one rank and rank r's rows are the global rows
  `[r·n, (r+1)·n)`.
- Rewards and rollout statistics are all-gathered (`RolloutSummary`, a few numbers per sequence), so that every
  rank computes the same advantages — some estimators normalise over the whole batch — the same zero-variance
  filter and the same metrics. The token ids stay where they were generated.
- For the update each rank keeps its own rows that survive the filter (whole groups: the filter drops groups),
  padded with whole groups of no-loss rows to the size of the largest shard (`batch.pad_rows`), so all ranks run
  the same number of passes and make the same shared-prompt decision.
With one process all of this reduces to the plain single-process step.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from reasoner.training.backend import Backend
from reasoner.training.batch import Rollouts, TrainBatch, batch_from_rows, batch_rows, pad_rows


def shard_prompts(indices: Sequence[int], backend: Backend) -> list[int]:
    """This rank's contiguous slice of the step's global prompt indices."""
    n, w = len(indices), backend.world_size
    if n % w:
        raise ValueError(f"prompts_per_step={n} must be divisible by the number of processes ({w})")
    per_rank = n // w
    return list(indices[backend.rank * per_rank:(backend.rank + 1) * per_rank])


@dataclass
class RolloutSummary:
    """Per-sequence numbers of one step's rollouts: rewards for the advantages, the rest for metrics."""

    rewards: list[float]                                    # [N] verifier totals plus shaping
    correct: list[bool]                                     # [N] primary verifier
    lengths: list[int]                                      # [N]
    truncated: list[bool]                                   # [N]
    values: dict[str, list[float]] = field(default_factory=dict)    # verifier -> [N] values
    statuses: dict[str, list[str]] = field(default_factory=dict)    # verifier -> [N] statuses

    @classmethod
    def local(cls, rollouts: Rollouts, rewards: torch.Tensor, scored) -> RolloutSummary:
        return cls(rewards=[float(r) for r in rewards], correct=[bool(c) for c in scored.correct],
                   lengths=rollouts.lengths, truncated=rollouts.truncated,
                   values={k: [float(s.value) for s in v] for k, v in scored.scores.items()},
                   statuses={k: [str(s.status) for s in v] for k, v in scored.scores.items()})

    @classmethod
    def gather(cls, part: RolloutSummary, backend: Backend) -> RolloutSummary:
        """The whole step's summary, ranks in order (this rank's own object when there is one process)."""
        if backend.world_size == 1:
            return part
        parts = backend.all_gather_object(part)
        return cls(rewards=[r for p in parts for r in p.rewards], correct=[c for p in parts for c in p.correct],
                   lengths=[n for p in parts for n in p.lengths], truncated=[t for p in parts for t in p.truncated],
                   values={k: [v for p in parts for v in p.values[k]] for k in part.values},
                   statuses={k: [s for p in parts for s in p.statuses[k]] for k in part.statuses})

    def status_counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(Counter(statuses)) for name, statuses in self.statuses.items()}


@dataclass(frozen=True)
class RankRows:
    """This rank's rows of the step's global batch: global rows `[start, start + size)`, `size` equal on every
    rank (`shard_prompts` gives every rank the same number of prompts). The step's read path gathers and slices
    through this object, so rank-offset arithmetic lives here only."""

    start: int
    size: int
    backend: Backend

    @classmethod
    def of(cls, size: int, backend: Backend) -> RankRows:
        return cls(start=backend.rank * size, size=size, backend=backend)

    @property
    def total(self) -> int:
        return self.size * self.backend.world_size

    def local(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a `[total, ...]` tensor."""
        return rows[self.start:self.start + self.size]

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """`[size, ...]` from every rank concatenated in rank order: `[total, ...]`."""
        if self.backend.world_size == 1:
            return local
        parts = self.backend.all_gather_object(local.detach().cpu())
        return torch.cat(parts).to(local.device)

    def gather_padded(self, local: torch.Tensor) -> torch.Tensor:
        """`gather` of `[size, T_rank]` rows whose width differs between ranks: right-padded with zeros to the
        widest, `[total, T_max]` (`local(...)[:, :T_rank]` takes this rank's rows back)."""
        if self.backend.world_size == 1:
            return local
        parts = self.backend.all_gather_object(local.detach().cpu())
        width = max(p.shape[1] for p in parts)
        return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts]).to(local.device)

    def for_update(self, batch: TrainBatch, keep: torch.Tensor, *, balance_tokens: bool = False,
                   pad_id: int = 0) -> TrainBatch | None:
        """This rank's rows of `keep` (global row indices that survive filtering), padded to the largest shard.

        `batch` holds this rank's rows. None when no row is kept on any rank. With `balance_tokens`, the kept
        groups are first re-dealt so that every rank gets the same number of groups with about the same number of
        tokens (`balanced_assignment`); rows move between ranks as plain data (`batch_rows`)."""
        if len(keep) == 0:
            return None
        local = [int(r) - self.start for r in keep if self.start <= int(r) < self.start + self.size]
        if self.backend.world_size == 1:
            return batch.select(local)
        if balance_tokens:
            return self._balanced(batch, keep, pad_id)
        largest = max(sum(1 for r in keep if rank * self.size <= int(r) < (rank + 1) * self.size)
                      for rank in range(self.backend.world_size))
        if local:
            return pad_rows(batch.select(local), largest)
        return self._padding_only(batch, largest)

    def _balanced(self, batch: TrainBatch, keep: torch.Tensor, pad_id: int) -> TrainBatch:
        g = batch.group_size if batch.group_size > 1 else 1
        kept = [int(r) for r in keep]
        mine = [r - self.start for r in kept if self.start <= r < self.start + self.size]
        rows = batch_rows(batch.select(mine)) if mine else []
        tokens = batch.attention_mask.sum(dim=1).cpu().tolist()
        gathered = self.backend.all_gather_object(([int(tokens[i]) for i in mine], rows))  # in rank order
        all_rows = [row for _, part in gathered for row in part]                 # the kept rows, in global order
        all_tokens = [n for part, _ in gathered for n in part]
        groups = [list(range(i, i + g)) for i in range(0, len(all_rows), g)]
        plan = balanced_assignment([sum(all_tokens[i] for i in grp) for grp in groups], self.backend.world_size)
        slots = max(len(p) for p in plan)
        mine_rows = [all_rows[i] for grp in plan[self.backend.rank] for i in groups[grp]]
        if not mine_rows:
            return self._padding_only(batch, slots * g)
        shard = batch_from_rows(mine_rows, pad_id, group_size=g, device=batch.input_ids.device)
        return pad_rows(shard, slots * g)

    def _padding_only(self, batch: TrainBatch, size: int) -> TrainBatch:
        # Nothing of this rank's survives: run padding passes only, built from its first group with no loss.
        empty = pad_rows(batch.select(list(range(batch.group_size))), batch.group_size)
        empty.response_mask.zero_()
        empty.advantages.zero_()
        empty.row_padding.fill_(True)
        return pad_rows(empty, size)


def balanced_assignment(group_tokens: Sequence[int], world_size: int) -> list[list[int]]:
    """Groups -> ranks: every rank gets `ceil(groups / world_size)` slots at most (equal passes after padding),
    the largest groups placed first on the least-loaded rank with a free slot (LPT scheduling). Returns each rank's
    group indices, ascending."""
    slots = -(-len(group_tokens) // world_size)
    load = [0] * world_size
    out: list[list[int]] = [[] for _ in range(world_size)]
    for g in sorted(range(len(group_tokens)), key=lambda i: (-group_tokens[i], i)):
        rank = min((r for r in range(world_size) if len(out[r]) < slots), key=lambda r: (load[r], r))
        out[rank].append(g)
        load[rank] += group_tokens[g]
    return [sorted(groups) for groups in out]


def shard_examples(batch: Sequence[Any], backend: Backend) -> list[Any]:
    """This rank's share of an SFT batch (every rank drew the same one): rows `rank, rank + W, ...`, padded with
    copies of the first row that have no target tokens (`loss_mask` all 0), so every rank runs the same number of
    micro-batches. The examples only need a `loss_mask` field."""
    if backend.world_size == 1:
        return list(batch)
    mine = list(batch[backend.rank::backend.world_size])
    size = -(-len(batch) // backend.world_size)
    blank = replace(batch[0], loss_mask=[0] * len(batch[0].loss_mask))
    return mine + [blank] * (size - len(mine))
