"""`reasoner dpo [--online] --config dpo.yaml [key=value ...]`: preference optimisation (DPO, IPO, DPO-Positive),
offline from pairs or on-policy from verifier rankings (`--online`: online.enabled=true)."""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    parser.add_argument("--online", action="store_true",
                        help="on-policy DPO: sample, grade with `verifiers`, pair within prompts, update; repeat")
    add_config_arguments(parser)


def run(args) -> int:
    from reasoner.dpo import DPOConfig, dpo

    cfg = stage_config(args, DPOConfig, extra=["online.enabled=true"] if args.online else [])
    if cfg is None:
        return 0
    result = dpo(cfg)
    m = result.metrics
    print(f"[dpo] {result.steps} steps, final loss {result.final_loss:.4f}, reward accuracy "
          f"{m.get('rewards/accuracy', float('nan')):.3f}, margin {m.get('rewards/margin', float('nan')):.3f}; "
          f"model: {result.final_model}")
    return 0
