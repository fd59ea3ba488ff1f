"""`reasoner eval --config eval.yaml [--model PATH] [--out DIR] [key=value ...]`: benchmark a model."""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    parser.add_argument("--model", help="model path or hub id (same as model.path=...)")
    parser.add_argument("--out", help="output folder (same as out_dir=...)")
    add_config_arguments(parser)


def run(args) -> int:
    from reasoner.evaluation import EvalConfig, run_eval
    from reasoner.evaluation.report import markdown_table

    extra = ([f"model.path={args.model}"] if args.model else []) + ([f"out_dir={args.out}"] if args.out else [])
    cfg = stage_config(args, EvalConfig, extra=extra)
    if cfg is None:
        return 0
    result = run_eval(cfg)
    print(markdown_table(result.metrics))
    print(f"[eval] results: {result.results_path}; report: {result.markdown_path}")
    return 0
