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

from reasoner.config import ConfigError
from reasoner.data.datasets import DatasetError

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {problem}. Assistant:"
)
TEMPLATES = ("chat", "r1", "raw")


@dataclass
class PromptConfig:
    """How a problem becomes a prompt: the `prompt` section of every stage (train, sft, eval, distill)."""

    template: str = "chat"                # chat | r1 | raw
    system_prompt: str | None = None
    instruction: str = ""                 # appended to each problem, e.g. a request to box the answer
    max_prompt_tokens: int | None = None  # longer prompts are an error naming the row; None -> no limit

    def __post_init__(self):
        if self.template not in TEMPLATES:
            raise ConfigError(f"prompt.template: unknown template {self.template!r}; valid templates: "
                              f"{', '.join(TEMPLATES)}")


@dataclass
class Prompt:
    id: str
    text: str                         # the rendered prompt, as the model sees it
    token_ids: list[int]
    example: dict[str, Any] = field(default_factory=dict)  # the row, with `answer` set for the verifiers


def render_prompt(tokenizer, problem: str, prompt: PromptConfig | None = None,
                  messages: Sequence[Mapping[str, str]] | None = None) -> str:
    """The prompt text for `problem`; a conversational prompt (`messages`) is rendered by the chat template as it
    is, with the configured system prompt added when it has none and the instruction appended to its last user
    message."""
    prompt = prompt or PromptConfig()
    content = f"{problem}{prompt.instruction}"
    template, system_prompt = prompt.template, prompt.system_prompt
    if messages is not None and template != "chat":
        raise ConfigError(f"a conversational prompt (a list of messages) needs prompt.template=chat, not {template!r}")
    if template == "chat":
        if getattr(tokenizer, "chat_template", None) is None:
            raise ConfigError("prompt.template is 'chat' but the tokenizer has no chat template; use 'r1' or 'raw'")
        chat = _conversation(messages, prompt) if messages is not None else \
            ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": content}]
        return tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    if template == "r1":
        return R1_ZERO_TEMPLATE.format(problem=content)
    if template == "raw":
        return content
    raise ConfigError(f"unknown prompt template '{template}'; valid templates: {', '.join(TEMPLATES)}")


def _conversation(messages: Sequence[Mapping[str, str]], prompt: PromptConfig) -> list[dict[str, str]]:
    chat = [dict(m) for m in messages]
    if prompt.system_prompt and not any(m["role"] == "system" for m in chat):
        chat.insert(0, {"role": "system", "content": prompt.system_prompt})
    if prompt.instruction:
        last = max(i for i, m in enumerate(chat) if m["role"] == "user")
        chat[last] = {**chat[last], "content": chat[last]["content"] + prompt.instruction}
    return chat


def build_prompts(tokenizer, examples: Sequence[Mapping[str, Any]],
                  prompt: PromptConfig | None = None) -> list[Prompt]:
    """Render and tokenize every example's `problem`; prompts longer than `prompt.max_prompt_tokens` are an error
    naming the row."""
    prompt = prompt or PromptConfig()
    max_prompt_tokens = prompt.max_prompt_tokens
    texts = [render_prompt(tokenizer, str(ex["problem"]), prompt, ex.get("prompt_messages")) for ex in examples]
    # Chat templates already contain any BOS / special tokens, so none are added here.
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    prompts = []
    for i, (ex, text, ids) in enumerate(zip(examples, texts, encoded)):
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise DatasetError(f"prompt of example {ex.get('id', i)!r} has {len(ids)} tokens, more than "
                               f"prompt.max_prompt_tokens={max_prompt_tokens}")
        prompts.append(Prompt(id=str(ex.get("id", i)), text=text, token_ids=list(ids), example=dict(ex)))
    return prompts
