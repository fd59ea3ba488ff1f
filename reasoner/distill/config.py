"""`reasoner distill` configuration: teacher x prompts x n samples -> verified, selected SFT rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from reasoner.data.datasets import DataConfig
from reasoner.data.templates import PromptConfig
from reasoner.evaluation.config import ENGINE_RENAMES
from reasoner.models.loading import ModelConfig
from reasoner.rollout.config import EngineConfig, SamplingConfig
from reasoner.training.config import PROMPT_RENAMES


def _distill_sampling() -> SamplingConfig:
    return SamplingConfig(protocol="r1", n=8, max_new_tokens=1024)


@dataclass
class DistillConfig:
    RENAMED: ClassVar[dict[str, str]] = {**ENGINE_RENAMES, **PROMPT_RENAMES}

    teacher: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)     # the prompts (and their gold answers)
    prompt: PromptConfig = field(default_factory=lambda: PromptConfig(max_prompt_tokens=1024))
    engine: EngineConfig = field(default_factory=EngineConfig)
    sampling: SamplingConfig = field(default_factory=_distill_sampling)
    # Graders (the same as training's). A `format` verifier is always graded too (weight 0 when not listed), so
    # `require_format` only changes the selection, never what was sampled.
    verifiers: dict[str, dict] = field(default_factory=lambda: {"math": {"extract": "auto"}})
    accept: str = "verified"          # verified: keep what the primary verifier accepts | all: no filter (baseline)
    require_format: bool = False      # keep only R1-format completions (<think>…</think><answer>…</answer>)
    drop_truncated: bool = True       # drop completions cut at max_new_tokens
    select: str = "all"               # all | shortest (long -> short) | random: per prompt, after the filter
    max_per_prompt: int = 0           # select=all: at most this many per prompt; 0 -> no limit
    dedup: bool = True                # the same response to the same prompt once
    max_rows: int = 0                 # keep a seeded random subset of this many rows; 0 -> all
    output: str = "sft.jsonl"         # written in out_dir (several selections can share one set of samples)
    pairs: bool = False               # write preference pairs for `reasoner dpo` instead (`--pairs`)
    pair_rule: str = "best_worst"     # best_worst | all | short_long (reasoner.algorithms.pair_indices)
    max_pairs_per_prompt: int = 0     # > 0: a seeded random subset of each prompt's pairs
    out_dir: str = "runs/distill"
    chunk_problems: int = 16
    resume: bool = True               # reuse out_dir/samples.jsonl (teacher samples are drawn only once)
    seed: int = 0                     # sampling seed (per chunk of problems) and selection randomness
    threads: int = 0
    progress: bool = True
