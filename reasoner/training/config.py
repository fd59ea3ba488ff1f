"""The GRPO run configuration: one typed dataclass per component, composed into `TrainConfig`.

GRPO, DAPO and Dr. GRPO differ here by values, not by code paths, e.g.
- GRPO:     advantage=grpo     loss_agg=token-mean              clip_high=null      kl_beta=0.04
- DAPO:     advantage=grpo     loss_agg=token-mean              clip_high=0.28      filter_zero_variance=true
            overlong_buffer=...  kl_beta=0
- Dr. GRPO: advantage=dr_grpo  loss_agg=seq-mean-token-sum-norm kl_beta=0
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from reasoner.config import ConfigError
from reasoner.data.datasets import DataConfig
from reasoner.data.templates import PromptConfig
from reasoner.metrics.sinks import SINKS
from reasoner.models.loading import ModelConfig
from reasoner.rollout.config import EngineConfig, SamplingConfig
from reasoner.training.backend import DistributedConfig
from reasoner.training.sampler import PromptSamplingConfig

# Keys renamed when every stage got one vocabulary (engine / sampling / prompt sections); old name -> new.
PROMPT_RENAMES = {f"data.{k}": f"prompt.{k}" for k in ("template", "system_prompt", "instruction",
                                                        "max_prompt_tokens")}
ROLLOUT_RENAMES = {
    "rollout.engine": "engine.name", "rollout.group_size": "sampling.n",
    **{f"rollout.{k}": f"sampling.{k}" for k in ("temperature", "top_p", "top_k", "max_new_tokens", "stop_strings")},
    **{f"rollout.{k}": f"engine.{k}" for k in ("max_batch_size", "fast_decode", "compact_below", "vllm")},
    "rollout": "engine (who samples) and sampling (what is sampled)",
}


@dataclass
class TrainDataConfig(DataConfig):
    """The RL loop's `data`: the shared data section plus how prompts are scheduled (training/sampler.py)."""

    sampling: PromptSamplingConfig = field(default_factory=PromptSamplingConfig)  # uniform | curriculum | prioritized


@dataclass
class AlgorithmConfig:
    advantage: str = "grpo"                    # reasoner.algorithms advantage registry
    advantage_eps: float = 1e-6
    policy_loss: str = "ppo_clip"              # reasoner.algorithms policy-loss registry
    loss_agg: str = "token-mean"               # token-mean | seq-mean-token-mean | seq-mean-token-sum-norm
    norm_length: int | None = None             # seq-mean-token-sum-norm divisor; null -> sampling.max_new_tokens
    clip_low: float = 0.2
    clip_high: float | None = None             # null -> clip_low; DAPO clip-higher uses 0.28
    dual_clip: float | None = None             # e.g. 3.0
    kl_beta: float = 0.0                       # 0 -> no reference model is loaded at all
    kl_estimator: str = "k3"                   # k1 | k2 | k3
    kl_in_reward: bool = False                 # False: β·KL in the loss; True: r − β·Σ KL before advantages
    entropy_coef: float = 0.0
    ppo_epochs: int = 1                        # μ: optimisation passes over each rollout batch
    minibatches: int = 1                       # optimizer steps per pass
    filter_zero_variance: bool = False         # DAPO dynamic sampling: drop groups whose rewards are all equal
    mask_truncated: bool = False               # DAPO overlong filtering: no loss on truncated completions
    overlong_buffer: int = 0                   # DAPO overlong reward shaping: L_cache tokens; 0 -> off
    overlong_penalty: float = 1.0              # penalty at the length limit
    tis_cap: float | None = None               # shorthand for rollout_is: token, rollout_is_max: <cap> (truncate)
    sapo_tau_pos: float = 1.0                  # policy_loss sapo: gate temperature where A > 0
    sapo_tau_neg: float = 1.05                 # policy_loss sapo: gate temperature where A <= 0
    # Rollout correction between the trainer's π_old and the engine's log-probs (reasoner/algorithms/
    # rollout_correction.py); levels: token | sequence (product) | geometric (mean of logs); null -> off.
    rollout_is: str | None = None              # importance weights on the per-token loss at this level
    rollout_is_mode: str = "truncate"          # truncate: clamp to [rollout_is_min, rollout_is_max]; mask: 0 outside
    rollout_is_min: float | None = None
    rollout_is_max: float | None = 2.0
    rollout_rs: str | None = None              # rejection: drop tokens / sequences whose ratio is out of bounds
    rollout_rs_min: float | None = None        # null -> 1 / rollout_rs_max
    rollout_rs_max: float | None = None        # required with rollout_rs
    # token-level estimators (advantage: gae | reinforce_pp; docs/ppo.md)
    gamma: float = 1.0                         # discount over response tokens
    lam: float = 1.0                           # GAE's λ: 1 -> Monte-Carlo returns minus V, 0 -> one-step TD
    whiten_advantages: bool = True             # whiten token advantages over the step's tokens (verl, TRL)
    whiten_rewards: bool = False               # gae: whiten token rewards first, keeping their mean (TRL)

    def __post_init__(self):
        from reasoner.algorithms import ADVANTAGE_ESTIMATORS, KL_ESTIMATORS, LOSS_AGGREGATIONS, POLICY_LOSSES
        for key, registry in (("advantage", ADVANTAGE_ESTIMATORS), ("policy_loss", POLICY_LOSSES),
                              ("loss_agg", LOSS_AGGREGATIONS), ("kl_estimator", KL_ESTIMATORS)):
            if getattr(self, key) not in registry:
                raise ConfigError(f"algorithm.{key}: unknown {registry.kind} {getattr(self, key)!r}; valid: "
                                  f"{', '.join(registry.names())}")
        if self.ppo_epochs < 1 or self.minibatches < 1:
            raise ConfigError("algorithm.ppo_epochs and algorithm.minibatches must be >= 1")
        for key in ("gamma", "lam"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"algorithm.{key} must be in [0, 1], got {getattr(self, key)}")
        self._check_policy_options()

    def _check_policy_options(self) -> None:
        from reasoner.algorithms.rollout_correction import check_options
        if self.sapo_tau_pos <= 0 or self.sapo_tau_neg <= 0:
            raise ConfigError("algorithm.sapo_tau_pos and algorithm.sapo_tau_neg must be > 0")
        if self.tis_cap is not None:
            if self.rollout_is is not None:
                raise ConfigError("algorithm.tis_cap is shorthand for rollout_is: token, rollout_is_max: <cap>; "
                                  "set one of them")
            if not self.tis_cap > 0:
                raise ConfigError(f"algorithm.tis_cap must be > 0, got {self.tis_cap}")
        problem = check_options(self.rollout_is, self.rollout_is_mode, self.rollout_is_min, self.rollout_is_max,
                                self.rollout_rs, self.rollout_rs_min, self.rollout_rs_max)
        if problem:
            raise ConfigError(f"algorithm.{problem}")


@dataclass
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: str = "constant"                 # transformers.get_scheduler names: constant, linear, cosine, ...
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    micro_batch_size: int = 0                  # sequences per forward/backward (gradient accumulation); 0 -> all
    max_tokens_per_micro_batch: int = 0        # > 0: micro-batches by a token budget instead (bin-packed rows)
    packed: bool | None = None                 # pack micro-batches into one row (no padding); null -> auto
    fused_head: bool | None = None             # log-probs from hidden states (no [N, T, V] logits); null -> auto

    def __post_init__(self):
        if self.micro_batch_size < 0 or self.max_tokens_per_micro_batch < 0:
            raise ConfigError("optim.micro_batch_size and optim.max_tokens_per_micro_batch must be >= 0")


@dataclass
class RewardConfig:
    # verifier name -> {"weight": w, **options}; see reasoner_verifiers.RewardSpec.from_config
    verifiers: dict[str, dict] = field(default_factory=lambda: {"math": {"weight": 1.0}, "format": {"weight": 0.1}})


@dataclass
class RunLogConfig:
    """What every training stage logs the same way (GRPO's and SFT's `log:` sections)."""

    # mirrors of metrics.jsonl (always written): tensorboard | wandb | mlflow (optional extras; offline-safe)
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    project: str = "reasoner"                  # wandb project / mlflow experiment
    run_name: str | None = None                # null -> the out_dir's folder name
    progress: bool = True
    plots: bool = True                         # plots/*.png and their place in report.md

    def __post_init__(self):
        unknown = [name for name in self.report_to if name not in SINKS]
        if unknown:
            raise ConfigError(f"log.report_to: unknown sink {unknown[0]!r}; valid: {', '.join(SINKS)}")


@dataclass
class LogConfig(RunLogConfig):
    sample_every: int = 10                     # log sample completions every N steps (0 -> never)
    num_samples: int = 4


LOG_RENAMES = {"log.tensorboard": "log.report_to"}  # `log.report_to=[]` turns TensorBoard off


@dataclass
class SyncCheckConfig:
    """Verified weight sync (see reasoner.training.sync_check)."""

    enabled: bool | None = None        # null -> on for engines with their own copy of the weights (vllm)
    every: int = 1                     # check after every N-th sync
    num_prompts: int = 4               # training prompts in the probe batch (plus one long prompt)
    long_prompt_tokens: int = 320      # length of the long prompt: > 2 CPU KV-cache blocks of 128 tokens
    max_new_tokens: int = 8            # tokens sampled per probe prompt
    max_mean_gap: float | None = None  # fail above this mean |Δ log p|; null -> 0.002 (float32) or 0.05 (bf16/fp16)
    max_kl: float | None = None        # fail above this KL estimate; null -> 1e-4 (float32) or 0.01 (bf16/fp16)
    max_gap: float | None = None       # fail when any token's |Δ log p| exceeds this (null: logged only)

    def __post_init__(self):
        if self.every < 1 or self.num_prompts < 1 or self.max_new_tokens < 1:
            raise ConfigError("sync_check: every, num_prompts and max_new_tokens must be >= 1")


def _critic_optim() -> OptimConfig:
    return OptimConfig(lr=1e-5)


@dataclass
class CriticConfig:
    """The value model of actor-critic PPO (`algorithm.advantage: gae`, docs/ppo.md); unused by other estimators.

    It is a separate model (its own body, optimizer and learning rate) trained after each policy update on the
    same rows, through the same backend kind and checkpoints as the policy (`reasoner/training/critic.py`)."""

    path: str | None = None                    # initial weights (a causal LM or a saved critic); null -> model.path
    optim: OptimConfig = field(default_factory=_critic_optim)   # the critic's own optimizer and micro-batches
    cliprange_value: float | None = 0.5        # clipped value loss half-width (verl's default); null -> no clip
    loss_agg: str = "token-mean"               # aggregation of the per-token value loss
    ppo_epochs: int | None = None              # passes over each rollout batch; null -> algorithm.ppo_epochs
    minibatches: int | None = None             # optimizer steps per pass; null -> algorithm.minibatches
    warmup_steps: int = 0                      # the first N steps train only the critic (verl's critic_warmup)

    def __post_init__(self):
        from reasoner.algorithms import LOSS_AGGREGATIONS
        if self.loss_agg not in LOSS_AGGREGATIONS:
            raise ConfigError(f"critic.loss_agg: unknown {LOSS_AGGREGATIONS.kind} {self.loss_agg!r}; valid: "
                              f"{', '.join(LOSS_AGGREGATIONS.names())}")
        if self.cliprange_value is not None and self.cliprange_value < 0:
            raise ConfigError(f"critic.cliprange_value must be >= 0 or null, got {self.cliprange_value}")
        for key in ("ppo_epochs", "minibatches"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"critic.{key} must be >= 1 or null, got {getattr(self, key)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"critic.warmup_steps must be >= 0, got {self.warmup_steps}")


def train_sampling() -> SamplingConfig:
    return SamplingConfig(protocol="none", n=8, temperature=1.0, top_p=1.0, max_new_tokens=256)


@dataclass
class TrainConfig:
    RENAMED: ClassVar[dict[str, str]] = {**ROLLOUT_RENAMES, **PROMPT_RENAMES, **LOG_RENAMES}

    model: ModelConfig = field(default_factory=ModelConfig)
    ref_model: str | None = None               # reference model path; null -> the initial policy (model.path)
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    prompt: PromptConfig = field(default_factory=lambda: PromptConfig(max_prompt_tokens=1024))
    engine: EngineConfig = field(default_factory=EngineConfig)
    sampling: SamplingConfig = field(default_factory=train_sampling)  # sampling.n: the group size G
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)     # algorithm.advantage: gae
    log: LogConfig = field(default_factory=LogConfig)
    sync_check: SyncCheckConfig = field(default_factory=SyncCheckConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    steps: int = 100                           # rollout/update steps
    prompts_per_step: int = 16
    seed: int = 0
    out_dir: str = "runs/grpo"
    save_every: int = 50                       # 0 -> only at the end
    keep_checkpoints: int = 2
    resume: bool = True                        # continue from the newest checkpoint in out_dir if there is one
    threads: int = 0                           # torch CPU threads; 0 -> leave torch's default
    keep_freed_memory: bool = True             # glibc: reuse freed heap pages (reasoner/training/allocator.py)

    def __post_init__(self):
        for name, low in (("steps", 1), ("prompts_per_step", 1), ("save_every", 0), ("keep_checkpoints", 0),
                          ("threads", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"'{name}' must be >= {low}, got {getattr(self, name)}")
