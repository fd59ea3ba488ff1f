"""Preference rows -> token ids of each pair's two sequences -> model inputs that keep track of the sequences.

A row has a prompt (`data.prompt_field`: text, or TRL's conversational list of messages), a chosen and a rejected
answer (text, or a list of assistant messages). Each side becomes one SFT example through SFT's own tokenizer
(`reasoner.sft.data.tokenize_examples`): a text answer follows the prompt rendered by the `prompt` section (the
rendering training and evaluation use) and ends with EOS; message answers are appended to the prompt's
conversation and rendered by the chat template. Targets are the answer tokens only.

A micro-batch of `m` pairs is `2m` sequences (the chosen ones first). Unpacked, each is a padded row; packed,
they are concatenated into rows of at most `max_length` tokens with positions restarting per sequence (as SFT
packs), and a `sequence` tensor names the sequence every target token belongs to, so the scorer can sum
log-probs per sequence in either layout.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reasoner.data.datasets import DataConfig, DatasetError, prompt_fields
from reasoner.data.templates import PromptConfig
from reasoner.sft.data import SFTExample, tokenize_examples
from reasoner.sft.trainer import collate_sft


@dataclass
class PairExample:
    index: int            # position in the data set (the key of precomputed reference log-probs)
    id: str
    chosen: SFTExample
    rejected: SFTExample


def load_preference_rows(data: DataConfig, *, chosen_field: str = "chosen",
                         rejected_field: str = "rejected") -> list[dict[str, Any]]:
    """Rows with `id`, `problem` (+ `prompt_messages` for chat prompts), `chosen` and `rejected`; a row missing a
    field, or an answer that is neither text nor messages, is one `DatasetError` naming the row."""
    from reasoner.data.datasets import _read_rows  # the row reader behind load_examples (file, hub, task)

    rows, origin = _read_rows(data)
    out: list[dict[str, Any]] = []
    for index, row in rows:
        where = f"{origin}, {index}"
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected an object, got {type(row).__name__}")
        for key in (data.prompt_field, chosen_field, rejected_field):
            if row.get(key) is None:
                raise DatasetError(f"{where}: a preference row needs '{data.prompt_field}', '{chosen_field}' and "
                                   f"'{rejected_field}' (fields present: {', '.join(sorted(row)) or 'none'})")
        example = {"id": str(row.get(data.id_field, len(out))),
                   **prompt_fields(row[data.prompt_field], f"{where}: field '{data.prompt_field}'"),
                   "chosen": _answer(row[chosen_field], f"{where}: field '{chosen_field}'"),
                   "rejected": _answer(row[rejected_field], f"{where}: field '{rejected_field}'")}
        out.append(example)
        if data.limit is not None and len(out) >= data.limit:
            break
    if not out:
        raise DatasetError(f"{origin}: no preference pairs")
    return out


def _answer(value: Any, where: str) -> str | list[dict[str, str]]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m
                                                 for m in value):
        if not any(m["role"] == "assistant" for m in value):
            raise DatasetError(f"{where}: the answer has no assistant message")
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise DatasetError(f"{where} must be text or a list of chat messages with 'role' and 'content'")


def tokenize_pairs(tokenizer, rows: Sequence[Mapping[str, Any]], *, prompt: PromptConfig | None = None,
                   max_length: int = 1024) -> list[PairExample]:
    """Both sides of every row as SFT examples (loss mask on the answer), truncated to `max_length`."""
    sides = {side: tokenize_examples(tokenizer, [_sft_row(row, side) for row in rows], prompt=prompt,
                                     max_length=max_length)
             for side in ("chosen", "rejected")}
    return [PairExample(i, str(row["id"]), sides["chosen"][i], sides["rejected"][i]) for i, row in enumerate(rows)]


def _sft_row(row: Mapping[str, Any], side: str) -> dict[str, Any]:
    answer = row[side]
    if isinstance(answer, list):
        history = row.get("prompt_messages") or [{"role": "user", "content": row["problem"]}]
        return {"id": row["id"], "messages": [*history, *answer]}
    out = {"id": row["id"], "problem": row["problem"], "response": answer}
    if row.get("prompt_messages"):
        out["prompt_messages"] = row["prompt_messages"]
    return out


@dataclass
class SequenceBatch:
    """`2m` sequences as model inputs: `tensors` has `input_ids`, `attention_mask` (or `position_ids` when packed),
    `labels` (-100 off targets) and `sequence` (the sequence index of each target token, -1 elsewhere)."""

    tensors: dict[str, torch.Tensor]   # each [R, L]
    tokens: torch.Tensor               # [2m] target tokens per sequence

    @property
    def num_sequences(self) -> int:
        return len(self.tokens)

    def to(self, device) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in self.tensors.items()}


def collate_pairs(pairs: Sequence[PairExample], pad_id: int, *, packed: bool = False,
                  max_length: int = 1024) -> SequenceBatch:
    """Sequences `[c_0 .. c_{m-1}, r_0 .. r_{m-1}]` of `pairs`, padded or packed (module docstring)."""
    seqs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    rows: list[SFTExample] = []
    owners: list[list[int]] = []          # per row: the sequence index of each token
    for s, e in enumerate(seqs):
        if packed and rows and len(rows[-1].input_ids) + len(e.input_ids) <= max_length:
            row = rows[-1]
            row.input_ids.extend(e.input_ids)
            row.loss_mask.extend([0] + e.loss_mask[1:])   # the first token is never a target
            assert row.position_ids is not None
            row.position_ids.extend(range(len(e.input_ids)))
            owners[-1].extend([s] * len(e.input_ids))
        else:
            rows.append(SFTExample(list(e.input_ids), [0] + list(e.loss_mask[1:]), False,
                                   list(range(len(e.input_ids))) if packed else None))
            owners.append([s] * len(e.input_ids))
    tensors = collate_sft(rows, pad_id)
    sequence = torch.full_like(tensors["labels"], -1)
    for i, own in enumerate(owners):
        sequence[i, :len(own)] = torch.tensor(own)
    sequence[tensors["labels"] == -100] = -1
    targets = sequence[:, 1:][sequence[:, 1:] >= 0]
    tokens = torch.bincount(targets, minlength=len(seqs))
    return SequenceBatch(tensors={**tensors, "sequence": sequence}, tokens=tokens)
