"""Verified weight sync: after a sync, the engine and the trainer score the same tokens and must agree.

Weight sync between a trainer and an engine that keeps its own copy of the weights (vLLM) fails in quiet ways:
a hung transfer, a layer the loader skips (a tied output head), keys and values still cached from the old
weights. Each of them leaves the engine sampling from another policy than the one being trained, and nothing
in the rewards says so. So after every sync (or every `every` syncs) a fixed probe batch goes through the
engine's ordinary sampling path and the trainer re-scores exactly the tokens the engine produced:

- `sync/logprob_gap_mean`, `sync/logprob_gap_max`: |log π_engine − log π_trainer| over the probe tokens;
- `sync/kl`: the k3 estimate E[exp(r) − 1 − r], r = log π_trainer − log π_engine, of KL(engine ‖ trainer) on
  those tokens (they were sampled by the engine);
and the run stops with `SyncCheckError` (after a checkpoint is written) when one exceeds its threshold.

The probe prompts are fixed for the run: a few training prompts and one long prompt built from them, several
KV-cache blocks long, so that a prefix cache left un-reset after the sync is hit and shows up as a gap (vLLM
caches whole blocks only; CPU blocks are 128 tokens, GPU blocks 16). Sampling uses the rollout temperature, so
the temperature handling of the engine's log-probs is checked too. The default thresholds are loose enough
for their precision (`Thresholds.resolve`); how small a staleness they can see is measured in docs/scaling.md.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from reasoner.errors import ReasonerError
from reasoner.rollout.base import Completion, RolloutEngine, SamplingParams
from reasoner.training.backend import Backend
from reasoner.training.batch import Rollouts, TrainBatch, collate
from reasoner.training.config import SyncCheckConfig
from reasoner.training.logprobs import score_logprobs


class SyncCheckError(ReasonerError, RuntimeError):
    """The engine does not compute what the trainer computes after a weight sync."""

    def __init__(self, message: str, metrics: dict[str, float] | None = None):
        super().__init__(message)
        self.metrics = dict(metrics or {})
        self.checkpoint = None

    def add_checkpoint(self, path) -> None:
        """Name the checkpoint written after the failing step in the message."""
        self.checkpoint = path
        self.args = (f"{self.args[0]}. The trainer's state after this step is kept in {path}",)


@dataclass
class ProbeResult:
    mean_gap: float
    max_gap: float
    kl: float
    tokens: int

    def metrics(self) -> dict[str, float]:
        return {"sync/logprob_gap_mean": self.mean_gap, "sync/logprob_gap_max": self.max_gap, "sync/kl": self.kl,
                "sync/probe_tokens": float(self.tokens)}

    def failures(self, limits: Thresholds) -> list[str]:
        out = []
        if not (self.mean_gap <= limits.mean_gap):  # `not <=` so that NaN fails
            out.append(f"mean |Δ log p| {self.mean_gap:.3g} > {limits.mean_gap:g}")
        if not (self.kl <= limits.kl):
            out.append(f"KL {self.kl:.3g} > {limits.kl:g}")
        if limits.max_gap is not None and not (self.max_gap <= limits.max_gap):
            out.append(f"max |Δ log p| {self.max_gap:.3g} > {limits.max_gap:g}")
        return out


@dataclass
class Thresholds:
    mean_gap: float
    kl: float
    max_gap: float | None = None

    @classmethod
    def resolve(cls, cfg: SyncCheckConfig, dtype: torch.dtype) -> Thresholds:
        """The configured thresholds, or defaults by precision: between the gap of a healthy engine and that of an
        engine left one step behind (both measured in docs/scaling.md with scripts/bench_vllm.py and
        scripts/probe_sensitivity.py). In bf16 both sides round differently, so the defaults leave more room."""
        low_precision = dtype in (torch.bfloat16, torch.float16)
        return cls(mean_gap=cfg.max_mean_gap if cfg.max_mean_gap is not None else (0.05 if low_precision else 2e-3),
                   kl=cfg.max_kl if cfg.max_kl is not None else (1e-2 if low_precision else 1e-4),
                   max_gap=cfg.max_gap)


def is_enabled(cfg: SyncCheckConfig, engine: RolloutEngine) -> bool:
    if cfg.enabled is not None:
        return cfg.enabled
    return engine.owns_weights


class SyncProbe:
    """The run's fixed probe batch, and the comparison of engine and trainer on it."""

    def __init__(self, cfg: SyncCheckConfig, prompts: Sequence[Sequence[int]], *, temperature: float, pad_id: int,
                 dtype: torch.dtype = torch.float32):
        self.cfg = cfg
        self.prompts = [list(p) for p in prompts]
        self.temperature = temperature
        self.pad_id = pad_id
        self.limits = Thresholds.resolve(cfg, dtype)

    def failures(self, result: ProbeResult) -> list[str]:
        return result.failures(self.limits)

    @classmethod
    def from_prompts(cls, cfg: SyncCheckConfig, pool: Sequence[Sequence[int]], *, temperature: float, pad_id: int,
                     dtype: torch.dtype = torch.float32, max_len: int | None = None) -> SyncProbe:
        """`num_prompts` prompts from `pool` plus one long prompt made by concatenating pool prompts."""
        if not pool:
            raise ValueError("sync_check: no prompts to build the probe batch from")
        short = [list(p) for p in pool[:cfg.num_prompts]]
        long_prompt: list[int] = []
        i = 0
        while len(long_prompt) < cfg.long_prompt_tokens:
            long_prompt.extend(pool[i % len(pool)])
            i += 1
        limit = cfg.long_prompt_tokens if max_len is None else min(cfg.long_prompt_tokens, max_len - cfg.max_new_tokens)
        return cls(cfg, short + [long_prompt[-limit:]], temperature=temperature, pad_id=pad_id, dtype=dtype)

    def measure(self, engine: RolloutEngine, model: torch.nn.Module) -> ProbeResult:
        """Sample the probe batch with `engine`, re-score the samples with `model`, compare the log-probs."""
        params = SamplingParams(n=1, temperature=self.temperature, max_new_tokens=self.cfg.max_new_tokens)
        groups = engine.generate(self.prompts, params)
        return compare(model, self.prompts, [g[0] for g in groups], temperature=self.temperature or 1.0,
                       pad_id=self.pad_id)


def compare(model: torch.nn.Module, prompts: Sequence[Sequence[int]], completions: Sequence[Completion], *,
            temperature: float, pad_id: int) -> ProbeResult:
    """Gap between the engine's sampling log-probs in `completions` and `model`'s log-probs of the same tokens."""
    rollouts = Rollouts(prompt_ids=[list(p) for p in prompts], completions=list(completions),
                        texts=[""] * len(completions), examples=[{} for _ in completions], group_size=1)
    batch = collate(rollouts, torch.zeros(len(completions)), pad_id, device=next(model.parameters()).device)
    trainer = score_logprobs(model, batch, temperature).cpu()
    engine = batch.engine_logprobs.cpu()
    mask = batch.response_mask.cpu() > 0
    if not mask.any():
        return ProbeResult(mean_gap=0.0, max_gap=0.0, kl=0.0, tokens=0)
    diff = (trainer - engine)[mask].double()
    gap = diff.abs()
    kl = (torch.exp(diff) - 1 - diff).mean()
    values = (float(gap.mean()), float(gap.max()), float(kl))
    if not all(math.isfinite(v) for v in values):
        values = tuple(v if math.isfinite(v) else float("nan") for v in values)
    return ProbeResult(mean_gap=values[0], max_gap=values[1], kl=values[2], tokens=int(mask.sum()))


def combine_probe_results(result: ProbeResult, backend: Backend) -> ProbeResult:
    """All ranks' probe results as one: token-weighted mean gap and KL, the largest gap."""
    if backend.world_size == 1:
        return result
    parts = backend.all_gather_object(result)
    tokens = sum(p.tokens for p in parts)
    weight = max(tokens, 1)
    return ProbeResult(mean_gap=sum(p.mean_gap * p.tokens for p in parts) / weight,
                       max_gap=max(p.max_gap for p in parts), kl=sum(p.kl * p.tokens for p in parts) / weight,
                       tokens=tokens)


def engine_gap_metrics(batch: TrainBatch, backend: Backend) -> dict[str, float]:
    """|log π_engine − log π_trainer| over the step's rollout tokens, before the update (a free, continuous
    check whenever the trainer computes old log-probs anyway: μ > 1, minibatches, TIS or KL in the reward)."""
    mask = batch.response_mask > 0
    gap = (batch.old_logprobs - batch.engine_logprobs).abs()[mask]
    local = [float(gap.sum()), float(gap.numel()), float(gap.max()) if gap.numel() else 0.0]
    parts = backend.all_gather_object(local) if backend.world_size > 1 else [local]
    count = sum(p[1] for p in parts)
    return {"rollout/engine_gap_mean": sum(p[0] for p in parts) / max(count, 1.0),
            "rollout/engine_gap_max": max(p[2] for p in parts)}
