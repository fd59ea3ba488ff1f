"""`reasoner rm --config rm.yaml [key=value ...]`: train a Bradley-Terry reward model on preference pairs."""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    add_config_arguments(parser)


def run(args) -> int:
    from reasoner.rm import RMConfig, train_rm

    cfg = stage_config(args, RMConfig)
    if cfg is None:
        return 0
    result = train_rm(cfg)
    groups = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.eval_by_group.items()))
    print(f"[rm] {result.steps} steps; held-out pairwise accuracy {result.eval_accuracy:.3f}"
          f"{f' ({groups})' if groups else ''}; model: {result.final_model}")
    return 0
