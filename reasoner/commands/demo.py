"""`reasoner demo [--out DIR] [--config FILE] [key=value ...]`: the built-in CPU demo (see reasoner.demo).

The defaults are the shipped pipeline config `demo`; `--config` files and overrides go on top of it.
"""
from __future__ import annotations

from reasoner.commands import add_config_arguments


def configure(parser) -> None:
    parser.add_argument("--out", help="run folder (same as out_dir=...; default runs/demo)")
    add_config_arguments(parser)


def run(args) -> int:
    import json

    from reasoner.config import load_config
    from reasoner.demo import DEMO_CONFIG, run_demo
    from reasoner.pipeline import PipelineConfig

    overrides = args.overrides + ([f"out_dir={args.out}"] if args.out else [])
    cfg = load_config(PipelineConfig, [DEMO_CONFIG, *(args.config or [])], overrides)
    summary = run_demo(cfg)
    print(json.dumps(summary, indent=2))
    print(f"[demo] report: {cfg.out_dir}/report.md")
    return 0
