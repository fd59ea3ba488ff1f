"""SFT run configuration."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from reasoner.config import ConfigError
from reasoner.data.datasets import DataConfig
from reasoner.data.templates import PromptConfig
from reasoner.models.loading import ModelConfig
from reasoner.training.backend import DistributedConfig
from reasoner.training.config import PROMPT_RENAMES, OptimConfig, RunLogConfig


def _sft_optim() -> OptimConfig:
    return OptimConfig(lr=1e-4, schedule="cosine", warmup_steps=10, max_grad_norm=1.0)


@dataclass
class LoraSettings:
    """Low-rank adapters through `peft`; the saved `<out_dir>/model` is the merged full model either way."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"])


@dataclass
class SFTLogConfig(RunLogConfig):
    every: int = 10                           # metrics every N optimizer steps (and at the last)

    def __post_init__(self):
        super().__post_init__()
        if self.every < 1:
            raise ConfigError(f"log.every must be >= 1, got {self.every}")


@dataclass
class SFTConfig:
    RENAMED: ClassVar[dict[str, str]] = {**PROMPT_RENAMES, "log_every": "log.every", "progress": "log.progress"}

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)  # prompt/response rows: how the prompt is rendered
    row_format: str = "auto"                  # auto (messages when present) | messages | prompt_response
    response_field: str = "response"          # prompt/response rows: the target text
    messages_field: str = "messages"          # chat rows: [{"role", "content"}, ...]; loss on assistant turns
    optim: OptimConfig = field(default_factory=_sft_optim)
    batch_size: int = 32                      # sequences (packed rows when packing) per optimizer step
    epochs: float = 1.0
    max_steps: int = 0                        # > 0 overrides epochs
    max_length: int = 1024                    # longer examples are truncated (counted and reported)
    packing: bool = False                     # concatenate examples into rows of max_length tokens
    lora: LoraSettings = field(default_factory=LoraSettings)
    seed: int = 0
    out_dir: str = "runs/sft"
    log: SFTLogConfig = field(default_factory=SFTLogConfig)
    threads: int = 0
    keep_freed_memory: bool = True   # glibc: reuse freed heap pages (reasoner/training/allocator.py)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)  # ddp / deepspeed under torchrun
