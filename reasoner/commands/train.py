"""`reasoner train --config grpo.yaml [key=value ...]`: GRPO training."""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    add_config_arguments(parser)


def run(args) -> int:
    from reasoner.training import TrainConfig, train

    cfg = stage_config(args, TrainConfig)
    if cfg is None:
        return 0
    result = train(cfg)
    print(f"[train] {result.steps} steps; final model: {result.final_model}; report: {result.out_dir / 'report.md'}")
    return 0
