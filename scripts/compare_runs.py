"""Parameter and metric differences between two training runs (e.g. 2-process ZeRO vs 1 process).

    python scripts/compare_runs.py RUN_A RUN_B [--initial MODEL_DIR]

Prints the largest absolute parameter difference between the runs' final models (`<run>/model`), how far
training moved the parameters from MODEL_DIR (when given), and the per-step metrics side by side.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--initial", help="the model both runs started from")
    parser.add_argument("--keys", default="reward/mean,grad_norm,entropy,loss")
    args = parser.parse_args()
    from safetensors.torch import load_file

    a = load_file(str(Path(args.run_a) / "model" / "model.safetensors"))
    b = load_file(str(Path(args.run_b) / "model" / "model.safetensors"))
    print(f"max |A - B| over parameters: {max(float((a[k] - b[k]).abs().max()) for k in a):.3e}")
    if args.initial:
        init = load_file(str(Path(args.initial) / "model.safetensors"))
        print(f"max |A - initial| (how far training moved): {max(float((a[k] - init[k]).abs().max()) for k in a):.3e}")
    keys = args.keys.split(",")
    read = lambda run: [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    for ra, rb in zip(read(args.run_a), read(args.run_b)):
        cells = "  ".join(f"{k}: {ra.get(k, float('nan')):.6g} / {rb.get(k, float('nan')):.6g}" for k in keys)
        print(f"step {ra['step']}: {cells}")


if __name__ == "__main__":
    main()
