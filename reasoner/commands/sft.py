"""`reasoner sft --config sft.yaml [key=value ...]`: supervised fine-tuning."""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    add_config_arguments(parser)


def run(args) -> int:
    from reasoner.sft import SFTConfig, sft

    cfg = stage_config(args, SFTConfig)
    if cfg is None:
        return 0
    result = sft(cfg)
    print(f"[sft] {result.steps} steps, final loss {result.final_loss:.4f}; model: {result.final_model}")
    return 0
