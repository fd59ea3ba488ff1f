"""The reference policy's summed log-probs of every pair: precomputed once (and stored), or a frozen copy.

`precompute` (the default, TRL's `precompute_ref_log_probs`): before the first update every pair is scored once,
by the policy itself when the reference is the starting model (no second copy in memory; with LoRA the adapters
start at zero, so the policy *is* the base model then) or by `ref_model`; the table is written to
`<out_dir>/reference_logps.pt` with a fingerprint of the reference and the token ids, and a re-run with the same
fingerprint reads it instead of scoring again. `frozen`: a second, frozen copy scores each micro-batch (memory for
a second model, no start-up pass; what on-policy DPO needs, where the pairs change every round).

Ranks score disjoint shares (padded to equal counts, so ZeRO-3's collective forwards line up) and exchange them.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from reasoner.dpo.data import PairExample, SequenceBatch, collate_pairs
from reasoner.dpo.scorer import SequenceLogps
from reasoner.training.backend import Backend
from reasoner.training.state_files import load_state_file

TABLE_FILE = "reference_logps.pt"


class Reference:
    """`logps(pairs, batch) -> [2m]`: reference log-probs of a micro-batch's `2m` sequences (chosen first)."""

    def __init__(self, *, table: torch.Tensor | None = None, scorer: SequenceLogps | None = None):
        if (table is None) == (scorer is None):
            raise ValueError("Reference: give a precomputed table or a frozen scorer, not both")
        self.table = table       # [P, 2] (chosen, rejected) per pair index
        self.scorer = scorer

    @torch.no_grad()
    def logps(self, pairs: Sequence[PairExample], batch: SequenceBatch, device) -> torch.Tensor:
        if self.table is not None:
            idx = torch.tensor([p.index for p in pairs])
            return torch.cat([self.table[idx, 0], self.table[idx, 1]]).to(device)
        assert self.scorer is not None
        return self.scorer(batch.to(device), batch.num_sequences)


def fingerprint(source: str, pairs: Sequence[PairExample]) -> str:
    h = hashlib.sha256(source.encode())
    for p in pairs:
        h.update(json.dumps([p.chosen.input_ids, p.chosen.loss_mask, p.rejected.input_ids,
                             p.rejected.loss_mask]).encode())
    return h.hexdigest()


def precompute_reference(scorer, pairs: Sequence[PairExample], backend: Backend, *, pad_id: int,
                         chunk: int, packed: bool, max_length: int) -> torch.Tensor:
    """`[P, 2]` summed log-probs of every pair under `scorer` (no gradient), each rank scoring its share."""
    mine = list(range(backend.rank, len(pairs), backend.world_size))
    per_rank = -(-len(pairs) // backend.world_size)
    mine += [mine[0] if mine else 0] * (per_rank - len(mine))      # equal forwards on every rank
    rows: dict[int, tuple[float, float]] = {}
    was_training = getattr(scorer, "training", False)
    scorer.eval()
    with torch.no_grad():
        for start in range(0, len(mine), chunk):
            part = [pairs[i] for i in mine[start:start + chunk]]
            batch = collate_pairs(part, pad_id, packed=packed, max_length=max_length)
            logps = scorer(batch.to(backend.device), batch.num_sequences).double().cpu()
            m = len(part)
            rows.update({p.index: (float(logps[j]), float(logps[m + j])) for j, p in enumerate(part)})
    scorer.train(was_training)
    merged: dict[int, tuple[float, float]] = {}
    for part_rows in backend.all_gather_object(rows):
        merged.update(part_rows)
    return torch.tensor([merged[i] for i in range(len(pairs))], dtype=torch.float64)


def load_or_precompute(out: Path, source: str, scorer, pairs: Sequence[PairExample], backend: Backend,
                       **kwargs) -> tuple[torch.Tensor, bool]:
    """The stored table when its fingerprint matches, else a fresh one (written by the main rank); returns it and
    whether it was computed now."""
    key = fingerprint(source, pairs)
    path = out / TABLE_FILE
    if path.is_file():
        stored = load_state_file(path)
        if stored.get("fingerprint") == key:
            return stored["logps"], False
    table = precompute_reference(scorer, pairs, backend, **kwargs)
    if backend.is_main:
        torch.save({"fingerprint": key, "source": source, "logps": table}, path)
    backend.barrier()
    return table, True
