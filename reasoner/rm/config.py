"""`reasoner rm` configuration: a Bradley-Terry reward model trained on preference pairs."""
from __future__ import annotations

from dataclasses import dataclass, field

from reasoner.config import ConfigError
from reasoner.data.datasets import DataConfig
from reasoner.data.templates import PromptConfig
from reasoner.models.loading import ModelConfig
from reasoner.training.backend import DistributedConfig
from reasoner.training.config import OptimConfig


def _rm_optim() -> OptimConfig:
    return OptimConfig(lr=1e-5, schedule="linear", warmup_steps=10, max_grad_norm=1.0)


def _rm_data() -> DataConfig:
    return DataConfig(source="arithmetic_preferences")


@dataclass
class RMConfig:
    model: ModelConfig = field(default_factory=ModelConfig)   # the body: a causal LM (its head is replaced)
    data: DataConfig = field(default_factory=_rm_data)        # rows with a prompt, `chosen` and `rejected`
    prompt: PromptConfig = field(default_factory=PromptConfig)   # how a text prompt is rendered (as in RL)
    chosen_field: str = "chosen"               # text, or a list of chat messages (the assistant's turn(s))
    rejected_field: str = "rejected"
    margin_field: str | None = None            # optional per-pair margin column (TRL's `margin`)
    center_coef: float = 0.0                   # centering term: coef * mean((r_c + r_r)^2); TRL suggests 0.01
    eval_fraction: float = 0.1                 # held-out share of the pairs (when eval_data is unset)
    eval_data: DataConfig | None = None        # a separate held-out preference set (e.g. the task's test split)
    group_field: str | None = "kind"           # held-out accuracy is also reported per value of this column
    optim: OptimConfig = field(default_factory=_rm_optim)
    batch_size: int = 32                       # pairs per optimizer step
    epochs: float = 1.0
    max_steps: int = 0                         # > 0 overrides epochs
    max_length: int = 1024                     # longer sequences are cut (counted and reported)
    eval_every: int = 0                        # held-out accuracy every N steps (0: only at the end)
    seed: int = 0
    out_dir: str = "runs/rm"
    log_every: int = 10
    threads: int = 0
    keep_freed_memory: bool = True
    progress: bool = True
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self):
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        for name in ("batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"'{name}' must be >= 1, got {getattr(self, name)}")
        if self.center_coef < 0:
            raise ConfigError(f"center_coef must be >= 0, got {self.center_coef}")
