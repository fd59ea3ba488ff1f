"""`reasoner demo [--out DIR] [key=value ...]`: the built-in CPU demo (see reasoner.demo)."""
from __future__ import annotations

from reasoner.cli import add_config_arguments


def configure(parser) -> None:
    parser.add_argument("--out", help="run folder (default runs/demo)")
    add_config_arguments(parser)


def run(args) -> int:
    import json

    from reasoner.config import load_config
    from reasoner.demo import DemoConfig, run_demo

    cfg = load_config(DemoConfig, args.config, args.overrides + ([f"out={args.out}"] if args.out else []))
    summary = run_demo(cfg)
    print(json.dumps(summary, indent=2))
    print(f"[demo] report: {cfg.out}/report.md")
    return 0
