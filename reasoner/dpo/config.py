"""`reasoner dpo` configuration: preference pairs, the loss, the reference, and SFT's shared sections."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from reasoner.config import ConfigError
from reasoner.data.datasets import DataConfig
from reasoner.data.templates import PromptConfig
from reasoner.models.loading import ModelConfig
from reasoner.rollout.config import EngineConfig, SamplingConfig
from reasoner.sft.config import LoraSettings
from reasoner.training.backend import DistributedConfig
from reasoner.training.config import PROMPT_RENAMES, OptimConfig

REFERENCES = ("precompute", "frozen")


def _dpo_optim() -> OptimConfig:
    return OptimConfig(lr=5e-7, schedule="linear", warmup_steps=10, max_grad_norm=1.0)


@dataclass
class PreferenceLossConfig:
    """One `PREFERENCE_LOSSES` entry and its hyperparameters (fields named like the functions' parameters)."""

    name: str = "sigmoid"             # sigmoid (DPO) | ipo
    beta: float = 0.1                 # DPO's β (IPO's τ)
    label_smoothing: float = 0.0      # sigmoid: conservative DPO's ε, in [0, 0.5)
    dpop_lambda: float = 0.0          # sigmoid: the DPO-Positive penalty λ (Smaug uses 50); 0 -> off
    sft_weight: float = 0.0           # + α · NLL of the chosen answers (RPO); 0 -> off

    def __post_init__(self):
        from reasoner.algorithms import PREFERENCE_LOSSES
        if self.name not in PREFERENCE_LOSSES:
            raise ConfigError(f"loss.name: unknown preference loss {self.name!r}; valid: "
                              f"{', '.join(PREFERENCE_LOSSES.names())}")
        if self.beta <= 0:
            raise ConfigError(f"loss.beta must be > 0, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"loss.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.dpop_lambda < 0 or self.sft_weight < 0:
            raise ConfigError("loss.dpop_lambda and loss.sft_weight must be >= 0")
        takes = PREFERENCE_LOSSES.option_names(self.name)
        for key in ("label_smoothing", "dpop_lambda"):
            if getattr(self, key) and key not in takes:
                raise ConfigError(f"loss.{key} is set but loss {self.name!r} does not take it "
                                  f"(its options: {', '.join(takes)})")


def _online_sampling() -> SamplingConfig:
    return SamplingConfig(protocol="none", n=8, temperature=1.0, top_p=1.0, max_new_tokens=256)


@dataclass
class OnlineConfig:
    """On-policy DPO (`reasoner dpo --online`): each round samples `sampling.n` answers per prompt from the current
    policy, scores them with `verifiers`, pairs them within prompts and takes `updates_per_round` optimizer steps
    on the round's pairs; `data` then holds prompts with gold answers, and the reference is a frozen copy."""

    enabled: bool = False
    rounds: int = 20
    prompts_per_round: int = 64
    pair_rule: str = "best_worst"     # best_worst | all | short_long (reasoner.algorithms.pair_indices)
    max_pairs_per_prompt: int = 1     # > 0: a seeded random subset per prompt; 0 -> every pair the rule gives
    updates_per_round: int = 1        # optimizer steps per round, each over all of the round's pairs
    drop_truncated: bool = True       # answers cut at sampling.max_new_tokens take part in no pair

    def __post_init__(self):
        from reasoner.algorithms import PAIR_RULES
        if self.pair_rule not in PAIR_RULES:
            raise ConfigError(f"online.pair_rule must be one of {', '.join(PAIR_RULES)}; got '{self.pair_rule}'")
        for name in ("rounds", "prompts_per_round", "updates_per_round"):
            if getattr(self, name) < 1:
                raise ConfigError(f"online.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class DPOConfig:
    RENAMED: ClassVar[dict[str, str]] = PROMPT_RENAMES

    model: ModelConfig = field(default_factory=ModelConfig)       # the policy's starting point
    data: DataConfig = field(default_factory=DataConfig)          # rows with a prompt, a chosen and a rejected answer
    prompt: PromptConfig = field(default_factory=PromptConfig)    # text answers: how the prompt is rendered
    chosen_field: str = "chosen"      # text, or chat messages (TRL's conversational format)
    rejected_field: str = "rejected"
    loss: PreferenceLossConfig = field(default_factory=PreferenceLossConfig)
    reference: str = "precompute"     # precompute: scored once before training, stored | frozen: a second copy
    ref_model: str | None = None      # the reference's path; null -> model.path (the policy before training)
    optim: OptimConfig = field(default_factory=_dpo_optim)       # micro_batch_size counts pairs
    batch_size: int = 32              # pairs per optimizer step
    epochs: float = 1.0
    max_steps: int = 0                # > 0 overrides epochs
    max_length: int = 1024            # prompt + answer tokens; longer sequences are truncated (counted)
    packing: bool = False             # the micro-batch's 2m sequences packed into rows of max_length tokens
    lora: LoraSettings = field(default_factory=LoraSettings)
    seed: int = 0
    out_dir: str = "runs/dpo"
    log_every: int = 1
    threads: int = 0
    keep_freed_memory: bool = True
    progress: bool = True
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    # on-policy DPO only (online.enabled): who samples, what, and how answers are graded
    online: OnlineConfig = field(default_factory=OnlineConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    sampling: SamplingConfig = field(default_factory=_online_sampling)   # sampling.n: answers per prompt
    verifiers: dict[str, dict] = field(default_factory=lambda: {"math": {"weight": 1.0}})

    def __post_init__(self):
        if self.reference not in REFERENCES:
            raise ConfigError(f"'reference' must be one of {', '.join(REFERENCES)}; got '{self.reference}'")
        for name in ("batch_size", "max_length", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"'{name}' must be >= 1, got {getattr(self, name)}")
        if self.max_steps < 0 or self.epochs <= 0:
            raise ConfigError("'max_steps' must be >= 0 and 'epochs' > 0")
