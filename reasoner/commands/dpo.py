"""`reasoner dpo --config dpo.yaml [key=value ...]`: preference optimisation (DPO, IPO, DPO-Positive)."""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    add_config_arguments(parser)


def run(args) -> int:
    from reasoner.dpo import DPOConfig, dpo

    cfg = stage_config(args, DPOConfig)
    if cfg is None:
        return 0
    result = dpo(cfg)
    m = result.metrics
    print(f"[dpo] {result.steps} steps, final loss {result.final_loss:.4f}, reward accuracy "
          f"{m.get('rewards/accuracy', float('nan')):.3f}, margin {m.get('rewards/margin', float('nan')):.3f}; "
          f"model: {result.final_model}")
    return 0
