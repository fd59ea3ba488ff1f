"""Preference rows -> token ids of the chosen and the rejected sequence, laid out as RL scores them.

Rows hold a prompt (`data.prompt_field`: text, or a list of chat messages), `chosen` and `rejected` (text, or
lists of chat messages: the assistant's turn(s)), optionally a margin and a group column (e.g. `kind`). Each
side is tokenized exactly as SFT tokenizes a prompt/response row (`sft.data.tokenize_examples`): the prompt
rendered by the shared `prompt` section and tokenized on its own, then the response and EOS. The
`reward_model` verifier (`rm/verifier.py`) encodes `(example, completion)` through the same function, so the
reward model scores RL completions in the layout it was trained on.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reasoner.data.datasets import DataConfig, DatasetError, prompt_fields
from reasoner.data.templates import PromptConfig
from reasoner.sft.data import tokenize_examples


@dataclass
class PairExample:
    chosen: list[int]                 # token ids: prompt + chosen response + EOS
    rejected: list[int]               # token ids: prompt + rejected response + EOS
    margin: float = 0.0
    group: str | None = None          # the row's group column (held-out accuracy per group)
    truncated: bool = False


def load_preference_rows(data: DataConfig, *, chosen_field: str = "chosen", rejected_field: str = "rejected",
                         margin_field: str | None = None) -> list[dict[str, Any]]:
    """Rows of a file / hub dataset / built-in task with a prompt, `chosen` and `rejected` (one error naming
    the row and the missing field)."""
    from reasoner.data.datasets import _read_rows  # the row reader behind load_examples (file, hub, task)

    rows, origin = _read_rows(data)
    out = []
    for index, row in rows:
        where = f"{origin}, {index}"
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected an object, got {type(row).__name__}")
        needed = [data.prompt_field, chosen_field, rejected_field] + ([margin_field] if margin_field else [])
        missing = [key for key in needed if row.get(key) is None]
        if missing:
            raise DatasetError(f"{where}: a preference row needs '{missing[0]}' (fields present: "
                               f"{', '.join(sorted(row)) or 'none'})")
        example = dict(row)
        example["id"] = str(row.get(data.id_field, index))
        example.update(prompt_fields(row[data.prompt_field], f"{where}: field '{data.prompt_field}'"))
        out.append(example)
        if data.limit is not None and len(out) >= data.limit:
            break
    if not out:
        raise DatasetError(f"{origin}: no preference rows")
    return out


def encode(tokenizer, example: Mapping[str, Any], response: str | Sequence[Mapping[str, str]],
           prompt: PromptConfig, max_length: int) -> tuple[list[int], bool]:
    """`(token ids, truncated)` of `example`'s prompt followed by `response` (text, or assistant messages)."""
    if isinstance(response, str):
        row = {"id": example.get("id"), "problem": example["problem"], "response": response}
        if example.get("prompt_messages"):
            row["prompt_messages"] = example["prompt_messages"]
        (tokens,) = tokenize_examples(tokenizer, [row], prompt=prompt, max_length=max_length,
                                      row_format="prompt_response")
    else:
        if not example.get("prompt_messages"):
            raise DatasetError(f"row {example.get('id')!r}: a conversational response needs a conversational "
                               "prompt (a list of messages)")
        messages = list(example["prompt_messages"]) + [dict(m) for m in response]
        (tokens,) = tokenize_examples(tokenizer, [{"id": example.get("id"), "messages": messages}],
                                      max_length=max_length, row_format="messages")
    return tokens.input_ids, tokens.truncated


def pair_examples(tokenizer, rows: Sequence[Mapping[str, Any]], *, prompt: PromptConfig, max_length: int,
                  chosen_field: str = "chosen", rejected_field: str = "rejected", margin_field: str | None = None,
                  group_field: str | None = None) -> list[PairExample]:
    out = []
    for row in rows:
        chosen, cut_c = encode(tokenizer, row, row[chosen_field], prompt, max_length)
        rejected, cut_r = encode(tokenizer, row, row[rejected_field], prompt, max_length)
        group = str(row[group_field]) if group_field and row.get(group_field) is not None else None
        out.append(PairExample(chosen=chosen, rejected=rejected, group=group, truncated=cut_c or cut_r,
                               margin=float(row[margin_field]) if margin_field else 0.0))
    return out
