"""`reasoner distill --config distill.yaml [--teacher PATH] [--out DIR] [key=value ...]`: rejection sampling."""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    parser.add_argument("--teacher", help="teacher model path or hub id (same as teacher.path=...)")
    parser.add_argument("--out", help="output folder (same as out_dir=...)")
    parser.add_argument("--pairs", action="store_true",
                        help="write preference pairs for `reasoner dpo` (pairs=true; output pairs.jsonl unless set)")
    add_config_arguments(parser)


def run(args) -> int:
    from reasoner.distill import DistillConfig, distill, format_stats
    from reasoner.distill.pairs import format_pair_stats

    extra = ([f"teacher.path={args.teacher}"] if args.teacher else []) + \
        ([f"out_dir={args.out}"] if args.out else [])
    if args.pairs:
        extra += ["pairs=true"] + ([] if any(o.startswith("output=") for o in args.overrides) else
                                   ["output=pairs.jsonl"])
    cfg = stage_config(args, DistillConfig, extra=extra)
    if cfg is None:
        return 0
    result = distill(cfg)
    print(format_pair_stats(result.stats) if cfg.pairs else format_stats(result.stats))
    print(f"[distill] {result.rows} rows: {result.output}")
    return 0
