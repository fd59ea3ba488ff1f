"""Turn SFT rows into token ids with a loss mask that covers response tokens only; optional packing.

Two row shapes:
- prompt/response: the prompt is rendered with the same template the GRPO trainer and evaluator use, and
  tokenized *separately* from the response, so that the prompt tokens are exactly what generation starts from;
  the response is followed by the EOS token so the model learns to stop.
- chat `messages`: rendered with the tokenizer's chat template; the loss covers every assistant turn.
`row_format` picks one (`auto`: messages when the row has them); distillation rows carry both.

Packing concatenates examples into rows of at most `max_length` tokens. Each row carries `position_ids` that
restart at 0 for every example; with no attention mask, transformers reads those restarts as sequence
boundaries and builds a block-diagonal causal mask, so packed examples never attend to each other. The first
token of every example is excluded from the loss (it would be predicted from the previous example's end).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reasoner.data.datasets import DataConfig, DatasetError, prompt_fields
from reasoner.data.templates import PromptConfig, render_prompt

ROW_FORMATS = ("auto", "messages", "prompt_response")


@dataclass
class SFTExample:
    input_ids: list[int]
    loss_mask: list[int]              # 1 where the token is a target (response / assistant tokens)
    truncated: bool = False
    position_ids: list[int] | None = None   # packed rows only: restarts at 0 at each example


def load_sft_rows(data: DataConfig, *, response_field: str = "response", messages_field: str = "messages",
                  row_format: str = "auto") -> list[dict[str, Any]]:
    """Rows of a file / hub dataset / built-in task, checked for the shape `row_format` needs.

    Unlike `load_examples` no gold answer (and, for chat rows, no prompt field) is required.
    """
    from reasoner.data.datasets import _read_rows  # the row reader behind load_examples (file, hub, task)

    if row_format not in ROW_FORMATS:
        raise DatasetError(f"row_format must be one of {', '.join(ROW_FORMATS)}; got '{row_format}'")
    rows, origin = _read_rows(data)
    out = []
    for index, row in rows:
        if not isinstance(row, dict):
            raise DatasetError(f"{origin}, {index}: expected an object, got {type(row).__name__}")
        has_chat = bool(row.get(messages_field))
        has_pair = row.get(data.prompt_field) is not None and row.get(response_field) is not None
        ok = {"auto": has_chat or has_pair, "messages": has_chat, "prompt_response": has_pair}[row_format]
        if not ok:
            need = {"auto": f"'{messages_field}' or '{data.prompt_field}' and '{response_field}'",
                    "messages": f"'{messages_field}'",
                    "prompt_response": f"'{data.prompt_field}' and '{response_field}'"}[row_format]
            raise DatasetError(f"{origin}, {index}: an SFT row needs {need} (fields present: "
                               f"{', '.join(sorted(row)) or 'none'})")
        example = dict(row)
        example["id"] = str(row.get(data.id_field, index))
        if has_pair:
            example.update(prompt_fields(row[data.prompt_field], f"{origin}, {index}: field '{data.prompt_field}'"))
        out.append(example)
        if data.limit is not None and len(out) >= data.limit:
            break
    if not out:
        raise DatasetError(f"{origin}: no examples")
    return out


def tokenize_examples(tokenizer, rows: Sequence[Mapping[str, Any]], *, prompt: PromptConfig | None = None,
                      response_field: str = "response", messages_field: str = "messages", max_length: int = 1024,
                      row_format: str = "auto") -> list[SFTExample]:
    """Token ids and loss masks of `rows`; prompt/response rows render their prompt as `prompt` says (the same
    rendering training and evaluation use), and a prompt over `prompt.max_prompt_tokens` is an error naming the
    row."""
    prompt = prompt or PromptConfig()
    out = []
    for i, row in enumerate(rows):
        where = f"row {row.get('id', i)!r}"
        use_chat = row_format == "messages" or (row_format == "auto" and bool(row.get(messages_field)))
        if use_chat and row.get(messages_field):
            ids, mask = _chat_tokens(tokenizer, row[messages_field], where)
        elif not use_chat and "problem" in row and response_field in row:
            text = render_prompt(tokenizer, str(row["problem"]), prompt, row.get("prompt_messages"))
            p_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if prompt.max_prompt_tokens is not None and len(p_ids) > prompt.max_prompt_tokens:
                raise DatasetError(f"{where}: the prompt has {len(p_ids)} tokens, more than "
                                   f"prompt.max_prompt_tokens={prompt.max_prompt_tokens}")
            r_ids = tokenizer(str(row[response_field]), add_special_tokens=False)["input_ids"]
            r_ids = r_ids + [tokenizer.eos_token_id]
            ids, mask = p_ids + r_ids, [0] * len(p_ids) + [1] * len(r_ids)
        else:
            raise DatasetError(f"{where}: needs either '{messages_field}' or a prompt and '{response_field}' "
                               f"(fields present: {', '.join(sorted(row))}; row_format={row_format})")
        truncated = len(ids) > max_length
        out.append(SFTExample(ids[:max_length], mask[:max_length], truncated))
    return out


def pack_examples(examples: Sequence[SFTExample], max_length: int) -> list[SFTExample]:
    """Greedy in-order packing into rows of at most `max_length` tokens (each example is <= max_length)."""
    rows: list[SFTExample] = []
    ids: list[int] = []
    mask: list[int] = []
    pos: list[int] = []
    for e in examples:
        if ids and len(ids) + len(e.input_ids) > max_length:
            rows.append(SFTExample(ids, mask, False, pos))
            ids, mask, pos = [], [], []
        ids.extend(e.input_ids)
        mask.extend([0] + e.loss_mask[1:])   # the first token is never a target (cross-example prediction)
        pos.extend(range(len(e.input_ids)))
    if ids:
        rows.append(SFTExample(ids, mask, False, pos))
    return rows


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
