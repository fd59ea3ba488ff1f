"""`reasoner pipeline` configuration: DeepSeek-R1's recipe as one YAML, one section per stage.

Stages, in this order (any subsequence may be run):
  init        build a tiny model offline from a task's text (the CPU demo; skip it when `base_model` is given)
  cold_start  SFT of the base model on worked solutions (R1's cold-start data)
  grpo        RL from verifiable rewards, starting from the cold-start model
  distill     rejection sampling from the GRPO model: verified traces -> SFT data
  student     SFT of a fresh student on the distilled data
  eval        benchmarks for the models named in `eval_models`
Model paths left empty in a stage's section are filled from the stage before it; a path set explicitly wins.
A pipeline-wide `seed`, when set, replaces every seed of every stage (run seeds, data and task seeds, the tiny
model's initialisation, evaluation sampling), so `seed=S` reruns the whole recipe on another draw.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from reasoner.distill.config import DistillConfig
from reasoner.evaluation.config import EvalConfig
from reasoner.models.tiny import TinyModelSpec
from reasoner.sft.config import SFTConfig
from reasoner.training.config import TrainConfig

STAGES = ("init", "cold_start", "grpo", "distill", "student", "eval")
MODEL_STAGES = ("init", "cold_start", "grpo", "student")  # stages whose output is a model


@dataclass
class TinyInitConfig:
    task: str = "arithmetic"              # a built-in task whose training text the tokenizer is trained on
    corpus_examples: int = 5000
    seed: int = 0                         # which draw of the task's training split makes the corpus
    spec: TinyModelSpec = field(default_factory=TinyModelSpec)


@dataclass
class PipelineConfig:
    RENAMED: ClassVar[dict[str, str]] = {"out": "out_dir"}

    out_dir: str = "runs/pipeline"
    seed: int | None = None               # set: every seed of every stage (see above); null: each stage's own
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    base_model: str = ""                  # the policy's starting point; empty -> the `init` stage's tiny model
    student_model: str = ""               # the student's starting point; empty -> base_model (a fresh copy)
    threads: int = 0                      # torch CPU threads for every stage; 0 -> each stage's own setting
    init: TinyInitConfig = field(default_factory=TinyInitConfig)
    cold_start: SFTConfig = field(default_factory=SFTConfig)
    grpo: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    student: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    eval_models: list[str] = field(default_factory=lambda: ["grpo", "student"])  # base or stage names
