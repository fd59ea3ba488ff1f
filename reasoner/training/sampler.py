"""Which prompts each step trains on (`data.sampling`): uniform, curriculum or prioritized, all exactly resumable.

- `uniform`: a seeded permutation per epoch (epoch e uses permutation(seed + e)); state = (epoch, position).
- `prioritized` (Kimi k1.5, §2.3.4): every prompt keeps a success estimate `p_i` from the training rollouts
  (correct answers / answers sampled for it; an unseen prompt counts as `p = 0`, so each is tried early) and a
  batch is drawn without replacement with probability ∝ `1 − p_i + ε`: the model works on what it fails.
- `curriculum`: prompts ordered easiest first, by the examples' `difficulty_field` (lower = easier), or, when
  that is empty, by the measured success estimate (higher = easier; unseen = 0.5); a batch is drawn uniformly
  from the easiest `f(step)` share, `f` rising linearly from `start_fraction` at step 1 to 1 at
  `full_at · steps`.

The loop tells the sampler what happened (`observe(indices, correct, group_size)`, the whole step's verdicts on
every rank), so every rank's sampler holds the same state. The state (draw count, success counts) is plain data
in the checkpoint's `state.json`; each draw's generator is seeded from `(seed, draw)`, so a resumed run draws
exactly what the straight run drew.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

from reasoner.config import ConfigError

SAMPLINGS = ("uniform", "curriculum", "prioritized")


@dataclass
class PromptSamplingConfig:
    """`data.sampling` (shorthand: `data.sampling: prioritized`)."""

    SHORTHAND: ClassVar[str] = "name"

    name: str = "uniform"              # uniform | curriculum | prioritized
    epsilon: float = 0.05              # prioritized: weight 1 − p + ε (ε > 0 keeps solved prompts in play)
    difficulty_field: str = "difficulty"  # curriculum: example field, lower = easier; "" -> measured pass rate
    start_fraction: float = 0.25       # curriculum: share of prompts (easiest first) available at step 1
    full_at: float = 0.5               # curriculum: fraction of the run's steps after which all are available

    def __post_init__(self):
        if self.name not in SAMPLINGS:
            raise ConfigError(f"data.sampling: unknown sampling {self.name!r}; valid: {', '.join(SAMPLINGS)}")
        if self.epsilon <= 0:
            raise ConfigError(f"data.sampling.epsilon must be > 0, got {self.epsilon}")
        if not 0 < self.start_fraction <= 1 or not 0 <= self.full_at <= 1:
            raise ConfigError("data.sampling.start_fraction must be in (0, 1] and full_at in [0, 1]")


@dataclass
class SamplerState:
    epoch: int = 0
    position: int = 0


class PromptSampler:
    """Uniform: yields batches of prompt indices; epoch e uses permutation(seed + e), so state = (epoch, position)."""

    def __init__(self, num_prompts: int, seed: int, state: SamplerState | None = None):
        if num_prompts < 1:
            raise ValueError("the prompt dataset is empty")
        self.num_prompts = num_prompts
        self.seed = seed
        self.state = state or SamplerState()

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_prompts, generator=g).tolist()

    def next_batch(self, size: int) -> list[int]:
        out: list[int] = []
        while len(out) < size:
            order = self._order(self.state.epoch)
            take = order[self.state.position:self.state.position + size - len(out)]
            out.extend(take)
            self.state.position += len(take)
            if self.state.position >= self.num_prompts:
                self.state = SamplerState(self.state.epoch + 1, 0)
        return out

    def observe(self, indices: Sequence[int], correct: Sequence[bool], group_size: int) -> dict[str, float]:
        """What the step's rollouts of `indices` scored (`correct`: [len(indices) * group_size], groups in
        order); uniform sampling ignores it. Returns metrics to log."""
        return {}

    def state_dict(self) -> dict:
        return asdict(self.state)

    def load_state_dict(self, state: dict) -> None:
        self.state = SamplerState(**state)


class _Tracked:
    """Success counts per prompt from the training rollouts, and a generator per draw (module docstring)."""

    kind = ""

    def __init__(self, num_prompts: int, seed: int):
        if num_prompts < 1:
            raise ValueError("the prompt dataset is empty")
        self.num_prompts, self.seed, self.draws = num_prompts, seed, 0
        self.attempts = [0] * num_prompts
        self.successes = [0] * num_prompts

    def success(self, unseen: float) -> torch.Tensor:
        """`[P]` estimates `successes / attempts`, `unseen` where nothing was sampled yet."""
        att = torch.tensor(self.attempts, dtype=torch.float64)
        return torch.where(att > 0, torch.tensor(self.successes, dtype=torch.float64) / att.clamp(min=1),
                           torch.full_like(att, unseen))

    def _generator(self) -> torch.Generator:
        self.draws += 1
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.draws)

    def observe(self, indices: Sequence[int], correct: Sequence[bool], group_size: int) -> dict[str, float]:
        if len(correct) != len(indices) * group_size:
            raise ValueError(f"{len(correct)} verdicts for {len(indices)} prompts x {group_size} samples")
        for k, i in enumerate(indices):
            self.attempts[i] += group_size
            self.successes[i] += sum(bool(c) for c in correct[k * group_size:(k + 1) * group_size])
        seen = sum(a > 0 for a in self.attempts)
        return {"sampler/seen_prompts": float(seen),
                "sampler/mean_success_seen": float(self.success(0.0)[torch.tensor(self.attempts) > 0].mean())}

    def state_dict(self) -> dict:
        return {"kind": self.kind, "draws": self.draws, "attempts": list(self.attempts),
                "successes": list(self.successes)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self.kind or len(state["attempts"]) != self.num_prompts:
            raise ValueError(f"the checkpoint's sampler state ({state.get('kind', 'uniform')}, "
                             f"{len(state.get('attempts', []))} prompts) does not fit data.sampling={self.kind} "
                             f"with {self.num_prompts} prompts")
        self.draws = int(state["draws"])
        self.attempts, self.successes = list(state["attempts"]), list(state["successes"])


class PrioritizedSampler(_Tracked):
    kind = "prioritized"

    def __init__(self, num_prompts: int, seed: int, *, epsilon: float):
        super().__init__(num_prompts, seed)
        self.epsilon = epsilon

    def weights(self) -> torch.Tensor:
        """`[P]` sampling weights `1 − p_i + ε` (unseen prompts: p = 0)."""
        return 1.0 - self.success(0.0) + self.epsilon

    def next_batch(self, size: int) -> list[int]:
        g = self._generator()
        return torch.multinomial(self.weights(), size, replacement=size > self.num_prompts, generator=g).tolist()


class CurriculumSampler(_Tracked):
    kind = "curriculum"

    def __init__(self, num_prompts: int, seed: int, *, total_steps: int, difficulty: Sequence[float] | None,
                 start_fraction: float, full_at: float):
        super().__init__(num_prompts, seed)
        self.total_steps, self.start_fraction, self.full_at = total_steps, start_fraction, full_at
        self.difficulty = None if difficulty is None else torch.tensor(list(difficulty), dtype=torch.float64)
        self.tiebreak = torch.randperm(num_prompts, generator=torch.Generator().manual_seed(seed))

    def available(self, step: int) -> int:
        """How many of the easiest prompts step `step` (1-based) draws from."""
        ramp = max(1.0, self.full_at * self.total_steps - 1)
        frac = min(1.0, self.start_fraction + (1 - self.start_fraction) * (step - 1) / ramp)
        return max(1, math.ceil(frac * self.num_prompts))

    def order(self) -> torch.Tensor:
        """Prompt indices, easiest first (ties in a fixed seeded order)."""
        hardness = self.difficulty if self.difficulty is not None else -self.success(0.5)
        shuffled = hardness[self.tiebreak]
        return self.tiebreak[torch.sort(shuffled, stable=True).indices]

    def next_batch(self, size: int) -> list[int]:
        pool = self.order()[:self.available(self.draws + 1)]
        g = self._generator()
        pick = torch.multinomial(torch.ones(len(pool)), size, replacement=size > len(pool), generator=g)
        return pool[pick].tolist()

    def observe(self, indices: Sequence[int], correct: Sequence[bool], group_size: int) -> dict[str, float]:
        return {**super().observe(indices, correct, group_size),
                "sampler/available": float(self.available(self.draws + 1))}


Sampler = PromptSampler | PrioritizedSampler | CurriculumSampler


def make_sampler(cfg: PromptSamplingConfig, examples: Sequence[Mapping[str, Any]], seed: int, *,
                 total_steps: int) -> Sampler:
    """The sampler `data.sampling` names over `examples`; a curriculum's difficulty field must be numeric in
    every example (one `ConfigError` naming the first that is not)."""
    if cfg.name == "prioritized":
        return PrioritizedSampler(len(examples), seed, epsilon=cfg.epsilon)
    if cfg.name == "curriculum":
        difficulty = None
        if cfg.difficulty_field:
            difficulty = []
            for e in examples:
                value = e.get(cfg.difficulty_field)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"data.sampling.difficulty_field: example {e.get('id')!r} has no numeric "
                                      f"'{cfg.difficulty_field}' (got {value!r}); set it to \"\" to order by the "
                                      "measured pass rate")
                difficulty.append(float(value))
        return CurriculumSampler(len(examples), seed, total_steps=total_steps, difficulty=difficulty,
                                 start_fraction=cfg.start_fraction, full_at=cfg.full_at)
    return PromptSampler(len(examples), seed)
