"""What flows between the stages of a GRPO step: typed containers with their shapes.

`N` = prompts × group size (the G completions of a prompt are contiguous), `P` = prompt width (left-padded),
`T` = response width (right-padded). A `TrainBatch` lays every sequence out as `[prompt | response]` exactly as
the engine produced it, with position ids counted from the first real token, so the trainer's forward pass sees
the same positions as generation did.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from reasoner.rollout.base import Completion


@dataclass
class Rollouts:
    """One step's sampled completions, flattened to N sequences."""

    prompt_ids: list[list[int]]          # [N] variable length
    completions: list[Completion]        # [N]
    texts: list[str]                     # [N] decoded completions
    examples: list[dict[str, Any]]       # [N] the example each sequence answers (shared within a group)
    group_size: int

    @property
    def size(self) -> int:
        return len(self.completions)

    @property
    def lengths(self) -> list[int]:
        return [len(c.token_ids) for c in self.completions]

    @property
    def truncated(self) -> list[bool]:
        return [c.finish_reason == "length" for c in self.completions]

    @classmethod
    def from_groups(cls, prompt_ids: Sequence[Sequence[int]], groups: Sequence[Sequence[Completion]],
                    examples: Sequence[dict], tokenizer) -> Rollouts:
        g = len(groups[0])
        flat = [c for group in groups for c in group]
        texts = tokenizer.batch_decode([c.token_ids for c in flat], skip_special_tokens=True)
        return cls(prompt_ids=[list(p) for p in prompt_ids for _ in range(g)], completions=flat, texts=texts,
                   examples=[ex for ex in examples for _ in range(g)], group_size=g)


@dataclass
class TrainBatch:
    """Tensors for the policy update. Optional log-prob fields are filled as the step needs them."""

    input_ids: torch.Tensor              # [N, P+T] long
    attention_mask: torch.Tensor         # [N, P+T] long
    position_ids: torch.Tensor           # [N, P+T] long
    response_mask: torch.Tensor          # [N, T] float, 1 on tokens that carry loss
    advantages: torch.Tensor             # [N] float
    engine_logprobs: torch.Tensor        # [N, T] float, sampling log-probs reported by the engine
    old_logprobs: torch.Tensor | None = None   # [N, T] policy before this step's updates (when μ>1 or minibatches>1)
    ref_logprobs: torch.Tensor | None = None   # [N, T] reference policy (when kl_beta > 0)
    is_weights: torch.Tensor | None = None     # [N, T] rollout-correction weights (set by the update when on)
    row_padding: torch.Tensor | None = None    # [N] bool: rows added only to even out ranks (no loss, not counted)
    values: torch.Tensor | None = None         # [N, T] the critic's V(s_t) when the rollouts were scored (gae)
    returns: torch.Tensor | None = None        # [N, T] the critic's regression targets (gae)
    group_size: int = 1                  # rows come in whole groups of this size sharing a prompt (1: unknown)

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    @property
    def response_width(self) -> int:
        return self.response_mask.shape[1]

    @property
    def response_ids(self) -> torch.Tensor:  # [N, T]
        return self.input_ids[:, -self.response_width:]

    def select(self, index: torch.Tensor | Sequence[int]) -> TrainBatch:
        """Rows `index`, with columns that are padding in every selected row trimmed away. The group structure is
        kept when `index` is a sequence of whole groups, each in order."""
        index = torch.as_tensor(index, dtype=torch.long)
        rows = {f.name: (v[index] if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
                for f in fields(self)}
        rows["group_size"] = self.group_size if _whole_groups(index, self.group_size) else 1
        batch = replace(self, **rows)
        return batch._trimmed()

    def _trimmed(self) -> TrainBatch:
        t = self.response_width
        prompt_mask = self.attention_mask[:, :-t] if t else self.attention_mask
        used_prompt = prompt_mask.any(dim=0).nonzero()
        start = int(used_prompt[0]) if len(used_prompt) else prompt_mask.shape[1]
        used_resp = self.attention_mask[:, prompt_mask.shape[1]:].any(dim=0).nonzero()
        keep_t = int(used_resp[-1]) + 1 if len(used_resp) else 0
        if start == 0 and keep_t == t:
            return self
        end = prompt_mask.shape[1] + keep_t

        def cut(x: torch.Tensor | None, response_only: bool) -> torch.Tensor | None:
            if x is None:
                return None
            return x[:, :keep_t] if response_only else x[:, start:end]

        return replace(
            self, input_ids=cut(self.input_ids, False), attention_mask=cut(self.attention_mask, False),
            position_ids=cut(self.position_ids, False), response_mask=cut(self.response_mask, True),
            engine_logprobs=cut(self.engine_logprobs, True), old_logprobs=cut(self.old_logprobs, True),
            ref_logprobs=cut(self.ref_logprobs, True), is_weights=cut(self.is_weights, True),
            values=cut(self.values, True), returns=cut(self.returns, True),
        )


@dataclass
class TrainRow:
    """One row of a `TrainBatch` as plain data (real tokens only), to move rows between ranks."""

    prompt: list[int]
    response: list[int]
    response_mask: list[float]               # [len(response)]
    engine_logprobs: list[float]             # [len(response)]
    advantage: float | list[float]           # one per sequence, or one per response token
    old_logprobs: list[float] | None = None
    ref_logprobs: list[float] | None = None
    values: list[float] | None = None
    returns: list[float] | None = None


def batch_rows(batch: TrainBatch) -> list[TrainRow]:
    """The rows of `batch` (no padding rows expected) as `TrainRow`s."""
    t = batch.response_width
    p = batch.input_ids.shape[1] - t
    ids, att = batch.input_ids.cpu(), batch.attention_mask.cpu().bool()
    out = []

    def resp(x: torch.Tensor | None, i: int, n: int) -> list[float] | None:
        return None if x is None else x[i, :n].cpu().tolist()

    for i in range(batch.size):
        n = int(att[i, p:].sum())
        adv = batch.advantages[i]
        out.append(TrainRow(prompt=ids[i, :p][att[i, :p]].tolist(), response=ids[i, p:p + n].tolist(),
                            response_mask=resp(batch.response_mask, i, n),
                            engine_logprobs=resp(batch.engine_logprobs, i, n),
                            advantage=float(adv) if adv.dim() == 0 else adv[:n].cpu().tolist(),
                            old_logprobs=resp(batch.old_logprobs, i, n), ref_logprobs=resp(batch.ref_logprobs, i, n),
                            values=resp(batch.values, i, n), returns=resp(batch.returns, i, n)))
    return out


def batch_from_rows(rows: Sequence[TrainRow], pad_id: int, *, group_size: int = 1,
                    device: torch.device | str = "cpu") -> TrainBatch:
    """The `TrainBatch` layout (`collate`'s) of `rows`; `group_size` when they are whole groups in order."""
    n = len(rows)
    width_p = max(len(r.prompt) for r in rows)
    width_t = max(1, max(len(r.response) for r in rows))
    input_ids = torch.full((n, width_p + width_t), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width_p + width_t), dtype=torch.long)
    per_token = isinstance(rows[0].advantage, list)
    fields_t = {name: torch.zeros((n, width_t)) for name in ("response_mask", "engine_logprobs")}
    optional = {name: torch.zeros((n, width_t)) for name in ("old_logprobs", "ref_logprobs", "values", "returns")
                if getattr(rows[0], name) is not None}
    advantages = torch.zeros((n, width_t)) if per_token else torch.zeros(n)
    for i, r in enumerate(rows):
        p, t = len(r.prompt), len(r.response)
        input_ids[i, width_p - p:width_p] = torch.tensor(r.prompt, dtype=torch.long)
        attention[i, width_p - p:width_p + t] = 1
        if t:
            input_ids[i, width_p:width_p + t] = torch.tensor(r.response, dtype=torch.long)
        for name, tensor in {**fields_t, **optional}.items():
            if t:
                tensor[i, :t] = torch.tensor(getattr(r, name), dtype=torch.float32)
        if per_token:
            advantages[i, :t] = torch.tensor(r.advantage, dtype=torch.float32)
        else:
            advantages[i] = float(r.advantage)
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return TrainBatch(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                      position_ids=position_ids.to(device), advantages=advantages.to(device),
                      group_size=group_size, **{k: v.to(device) for k, v in {**fields_t, **optional}.items()})


def _whole_groups(index: torch.Tensor, g: int) -> bool:
    if g <= 1 or len(index) % g:
        return False
    groups = index.view(-1, g)
    return bool(((groups[:, 0] % g) == 0).all() and (groups - groups[:, :1] == torch.arange(g)).all())


def group_order(num_rows: int, group_size: int, generator: torch.Generator) -> torch.Tensor:
    """A random order of rows that keeps each group's rows together and in order (shuffles whole groups)."""
    groups = torch.randperm(num_rows // group_size, generator=generator)
    return (groups[:, None] * group_size + torch.arange(group_size)).flatten()


def collate(rollouts: Rollouts, advantages: torch.Tensor, pad_id: int, *, mask_truncated: bool = False,
            device: torch.device | str = "cpu") -> TrainBatch:
    """Lay out `[left-padded prompt | right-padded response]` rows for the forward pass."""
    n = rollouts.size
    width_p = max(len(p) for p in rollouts.prompt_ids)
    width_t = max(1, max(rollouts.lengths))
    input_ids = torch.full((n, width_p + width_t), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width_p + width_t), dtype=torch.long)
    response_mask = torch.zeros((n, width_t))
    engine_lp = torch.zeros((n, width_t))
    for i, (prompt, comp) in enumerate(zip(rollouts.prompt_ids, rollouts.completions)):
        p, t = len(prompt), len(comp.token_ids)
        input_ids[i, width_p - p:width_p] = torch.tensor(prompt, dtype=torch.long)
        attention[i, width_p - p:width_p + t] = 1
        if t:
            input_ids[i, width_p:width_p + t] = torch.tensor(comp.token_ids, dtype=torch.long)
            engine_lp[i, :t] = torch.tensor(comp.logprobs, dtype=torch.float32)
            if not (mask_truncated and comp.finish_reason == "length"):
                response_mask[i, :t] = 1.0
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return TrainBatch(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                      position_ids=position_ids.to(device), response_mask=response_mask.to(device),
                      advantages=advantages.to(device, torch.float32), engine_logprobs=engine_lp.to(device),
                      group_size=rollouts.group_size)


def pad_rows(batch: TrainBatch, size: int) -> TrainBatch:
    """`batch` grown to `size` rows with copies of its first row that carry no loss (`row_padding` marks them).

    Multi-process runs pad every rank's shard to the same size, so that all ranks run the same number of forward
    and backward passes (ZeRO-3 and DDP need that); the padding rows have a zero response mask and advantage, so
    they add nothing to the loss, and the loss denominators do not count them. Padding a batch of whole groups by
    a multiple of the group size keeps it one of whole groups (copies of one row share their prompt), so every
    rank makes the same shared-prompt decision in the forward pass.
    """
    padding = batch.row_padding if batch.row_padding is not None else torch.zeros(batch.size, dtype=torch.bool,
                                                                                  device=batch.input_ids.device)
    extra = size - batch.size
    if extra < 0:
        raise ValueError(f"cannot pad a batch of {batch.size} rows down to {size}")
    if extra == 0 or batch.size == 0:
        if extra and batch.size == 0:
            raise ValueError("cannot pad an empty batch: there is no row to copy")
        return replace(batch, row_padding=padding)
    index = torch.cat([torch.arange(batch.size), torch.zeros(extra, dtype=torch.long)])
    grown = replace(batch, **{f.name: (v[index] if isinstance(v := getattr(batch, f.name), torch.Tensor) else v)
                              for f in fields(batch)})
    grown.response_mask[batch.size:] = 0.0
    grown.advantages[batch.size:] = 0.0
    grown.row_padding = torch.cat([padding, torch.ones(extra, dtype=torch.bool, device=padding.device)])
    if extra % batch.group_size:
        grown.group_size = 1  # no longer whole groups
    return grown
