"""`reasoner demo [--out DIR] [--config FILE] [key=value ...]`: the built-in CPU demo (see reasoner.demo).

The defaults are the shipped pipeline config `demo`; `--config` files and overrides go on top of it.
"""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    parser.add_argument("--out", help="run folder (same as out_dir=...; default runs/demo)")
    add_config_arguments(parser)


def run(args) -> int:
    import json

    from reasoner.demo import DEMO_CONFIG, run_demo
    from reasoner.pipeline import PipelineConfig

    cfg = stage_config(args, PipelineConfig, extra=[f"out_dir={args.out}"] if args.out else [], base=[DEMO_CONFIG])
    if cfg is None:
        return 0
    summary = run_demo(cfg)
    print(json.dumps(summary, indent=2))
    print(f"[demo] report: {cfg.out_dir}/report.md")
    return 0
