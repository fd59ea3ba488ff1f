"""Turn SFT rows into token ids with a loss mask that covers response tokens only.

Two row shapes:
- prompt/response: the prompt is rendered with the same template the GRPO trainer and evaluator use, and
  tokenized *separately* from the response, so that the prompt tokens are exactly what generation starts from;
  the response is followed by the EOS token so the model learns to stop.
- chat `messages`: rendered with the tokenizer's chat template; the loss covers every assistant turn.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reasoner.data.datasets import DatasetError
from reasoner.data.templates import render_prompt


@dataclass
class SFTExample:
    input_ids: list[int]
    loss_mask: list[int]              # 1 where the token is a target (response / assistant tokens)
    truncated: bool = False


def tokenize_examples(tokenizer, rows: Sequence[Mapping[str, Any]], *, template: str = "chat",
                      system_prompt: str | None = None, instruction: str = "", response_field: str = "response",
                      messages_field: str = "messages", max_length: int = 1024) -> list[SFTExample]:
    out = []
    for i, row in enumerate(rows):
        where = f"row {row.get('id', i)!r}"
        if messages_field in row and row[messages_field]:
            ids, mask = _chat_tokens(tokenizer, row[messages_field], where)
        elif "problem" in row and response_field in row:
            prompt = render_prompt(tokenizer, str(row["problem"]), template, system_prompt, instruction)
            p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            r_ids = tokenizer(str(row[response_field]), add_special_tokens=False)["input_ids"]
            r_ids = r_ids + [tokenizer.eos_token_id]
            ids, mask = p_ids + r_ids, [0] * len(p_ids) + [1] * len(r_ids)
        else:
            raise DatasetError(f"{where}: needs either '{messages_field}' or a prompt and '{response_field}' "
                               f"(fields present: {', '.join(sorted(row))})")
        truncated = len(ids) > max_length
        out.append(SFTExample(ids[:max_length], mask[:max_length], truncated))
    return out


def _chat_tokens(tokenizer, messages: Sequence[Mapping[str, str]], where: str) -> tuple[list[int], list[int]]:
    """Token ids of the conversation and a mask over assistant turns, found by rendering growing prefixes."""
    for j, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise DatasetError(f"{where}: message {j} must have 'role' and 'content'")
    if not any(m["role"] == "assistant" for m in messages):
        raise DatasetError(f"{where}: no assistant message to train on")
    ids: list[int] = []
    mask: list[int] = []
    for j, m in enumerate(messages):
        # Render the prefix up to and including message j; the new tokens belong to message j. Chat templates
        # are prefix-stable for our purposes (each turn appends text), which is checked here.
        text = tokenizer.apply_chat_template(list(messages[:j + 1]), tokenize=False)
        if m["role"] == "assistant":
            before = tokenizer.apply_chat_template(list(messages[:j]), tokenize=False,
                                                   add_generation_prompt=True) if j else ""
            head = tokenizer(before, add_special_tokens=False)["input_ids"] if before else []
            if head[:len(ids)] != ids:
                raise DatasetError(f"{where}: the chat template is not prefix-stable at message {j}")
            mask += [0] * (len(head) - len(ids))
            ids = head
        full = tokenizer(text, add_special_tokens=False)["input_ids"]
        if full[:len(ids)] != ids:
            raise DatasetError(f"{where}: the chat template is not prefix-stable at message {j}")
        mask += [1 if m["role"] == "assistant" else 0] * (len(full) - len(ids))
        ids = full
    return ids, mask
