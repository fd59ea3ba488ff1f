"""`reasoner merge A B [C ...] --weights 0.5 0.5 --out DIR`: linear weight averaging of checkpoints."""
from __future__ import annotations


def configure(parser) -> None:
    parser.add_argument("models", nargs="+", help="checkpoint folders (or hub ids) of one architecture")
    parser.add_argument("--weights", nargs="+", type=float, help="one weight per model (default: equal weights)")
    parser.add_argument("--out", required=True, help="folder of the merged model")


def run(args) -> int:
    from reasoner.models.merge import merge_models

    weights = args.weights or [1.0 / len(args.models)] * len(args.models)
    out = merge_models(args.models, weights, args.out)
    print(f"[merge] {' + '.join(f'{w:g} x {m}' for w, m in zip(weights, args.models))} -> {out}")
    return 0
