"""Print a PPO run's critic curves (and reward / pass@1) as a table: `python scripts/critic_curves.py RUN_DIR
[--every 10]`, where RUN_DIR holds `metrics.jsonl` (e.g. runs/demo_ppo/grpo). Means over blocks of `--every`
steps, so the table reads like a smoothed curve."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

KEYS = ("reward/mean", "pass@1", "length/mean", "critic/value_loss", "critic/explained_variance",
        "critic/values_mean", "critic/returns_mean", "critic/vf_clipfrac", "entropy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    records = [json.loads(line) for line in (Path(args.run) / "metrics.jsonl").read_text().splitlines()]
    keys = [k for k in KEYS if any(k in r for r in records)]
    print("| steps | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for start in range(0, len(records), args.every):
        block = records[start:start + args.every]
        cells = []
        for k in keys:
            vals = [r[k] for r in block if k in r and not math.isnan(r[k])]
            cells.append(f"{sum(vals) / len(vals):.3f}" if vals else "-")
        print(f"| {block[0]['step']}-{block[-1]['step']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
