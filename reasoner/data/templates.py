"""Prompt templates: how a problem becomes the token ids a rollout starts from.

- `r1`: DeepSeek-R1-Zero's plain-text template (no chat markup; the model continues after "Assistant:").
- `chat`: the tokenizer's own chat template (`apply_chat_template`) with an optional system prompt — what
  instruct and chat models expect.
- `raw`: the problem text as is.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {problem}. Assistant:"
)
TEMPLATES = ("chat", "r1", "raw")


@dataclass
class Prompt:
    id: str
    text: str                         # the rendered prompt, as the model sees it
    token_ids: list[int]
    example: dict[str, Any] = field(default_factory=dict)  # the row, with `answer` set for the verifiers


def render_prompt(tokenizer, problem: str, template: str = "chat", system_prompt: str | None = None,
                  instruction: str = "") -> str:
    content = f"{problem}{instruction}"
    if template == "chat":
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("data.template is 'chat' but the tokenizer has no chat template; use 'r1' or 'raw'")
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": content}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if template == "r1":
        return R1_ZERO_TEMPLATE.format(problem=content)
    if template == "raw":
        return content
    raise ValueError(f"unknown prompt template '{template}'; valid templates: {', '.join(TEMPLATES)}")


def build_prompts(tokenizer, examples: Sequence[Mapping[str, Any]], *, template: str = "chat",
                  system_prompt: str | None = None, instruction: str = "", max_prompt_tokens: int | None = None,
                  prompt_field: str = "problem") -> list[Prompt]:
    """Render and tokenize every example; prompts longer than `max_prompt_tokens` are an error naming the row."""
    texts = [render_prompt(tokenizer, str(ex[prompt_field]), template, system_prompt, instruction)
             for ex in examples]
    # Chat templates already contain any BOS / special tokens, so none are added here.
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    prompts = []
    for i, (ex, text, ids) in enumerate(zip(examples, texts, encoded)):
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise ValueError(f"prompt of example {ex.get('id', i)!r} has {len(ids)} tokens, more than "
                             f"data.max_prompt_tokens={max_prompt_tokens}")
        prompts.append(Prompt(id=str(ex.get("id", i)), text=text, token_ids=list(ids), example=dict(ex)))
    return prompts
