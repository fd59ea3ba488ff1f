"""`reasoner pipeline --config pipeline.yaml [--out DIR] [key=value ...]`: the R1 recipe, stage by stage."""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    parser.add_argument("--out", help="pipeline folder (same as out_dir=...)")
    add_config_arguments(parser)


def run(args) -> int:
    import json

    from reasoner.pipeline import PipelineConfig, run_pipeline

    cfg = stage_config(args, PipelineConfig, extra=[f"out_dir={args.out}"] if args.out else [])
    if cfg is None:
        return 0
    result = run_pipeline(cfg)
    print(json.dumps(result.outputs, indent=2))
    print(f"[pipeline] ran {', '.join(result.ran) or 'nothing (all stages done earlier)'}; "
          f"summary: {result.out / 'summary.json'}")
    return 0
