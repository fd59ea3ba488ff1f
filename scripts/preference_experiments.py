"""The measured results of docs/preference.md, on the demo task, through the `reasoner` command line only.

    python scripts/preference_experiments.py PHASE [--demo runs/demo] [--out runs/pref]

Every phase starts from the warm-started (cold-start SFT) model of a finished `reasoner demo --out <demo>` and
evaluates on the demo's held-out problems with the demo's eval settings (200 problems x 8 samples, temperature
1.0, 96 new tokens, the math grader; 95% intervals from `reasoner eval`). Phases:

- `offline`: `reasoner distill --pairs` from the warm start (verified vs wrong, best_worst), then `reasoner dpo`
  with and without the DPO-Positive term; held-out pass@1 of both against the warm start, and the chosen
  log-likelihood curves (`plots/dpo_logps_chosen.png`).
- `length`: GRPO from the warm start with and without Kimi's length penalty, same budget; held-out pass@1 and
  mean length (`plots/accuracy_vs_length.png`).
- `prioritized`: GRPO on an easy + hard mix (3-term and 8-term chains), uniform vs prioritized sampling;
  held-out pass@1 of the hard problems at checkpoints, against sampled answers (`plots/hard_pass1.png`).
- `online`: on-policy DPO (`reasoner dpo --online`) vs GRPO from the warm start with the same number of
  sampled answers; held-out pass@1 of both.

Each command is printed before it runs and appended to `<out>/commands.txt`; finished steps are skipped on a
re-run (a step is done when its output exists). `summary.json` in each phase folder holds the numbers.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

EVAL = ["benchmarks=[{name: arithmetic, num_examples: 200}]", "sampling.protocol=none", "sampling.n=8",
        "sampling.temperature=1.0", "sampling.top_p=1.0", "sampling.max_new_tokens=96", "prompt.template=chat",
        "verifiers={math: {weight: 1.0}}", "ks=[1,8]", "chunk_problems=64", "plots=false", "progress=false"]


def sh(cmd: list[str], out: Path, done: Path | None = None) -> None:
    """Run `reasoner ...` unless `done` exists; the command goes to `<out>/commands.txt` either way."""
    line = " ".join(shlex.quote(c) for c in cmd)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "commands.txt").open("a") as f:
        f.write(line + "\n")
    if done is not None and done.exists():
        print(f"[skip, done] {line}")
        return
    print(f"[run] {line}", flush=True)
    subprocess.run(cmd, check=True)


def reasoner(*args: str) -> list[str]:
    return [sys.executable, "-m", "reasoner", *args]


def evaluate(model: Path | str, out: Path, log: Path, benchmark: str | None = None) -> dict:
    extra = [f"benchmarks=[{benchmark}]"] if benchmark else []
    sh(reasoner("eval", "--model", str(model), "--out", str(out), *EVAL, *extra), log, out / "results.json")
    results = json.loads((out / "results.json").read_text())
    bench = next(iter(results["benchmarks"].values()))
    return {"pass@1": bench["pass@1"], "pass@8": bench.get("pass@8"), "mean_length": bench["mean_length"]}


def grpo(out: Path, log: Path, demo: Path, *overrides: str) -> Path:
    """`reasoner train` with the demo's GRPO settings (its resolved config), from the warm start."""
    sh(reasoner("train", "--config", str(demo / "grpo" / "config.yaml"), f"out_dir={out}",
                f"model.path={demo / 'cold_start' / 'model'}", "log.progress=false", *overrides),
       log, out / "model" / "config.json")
    return out / "model"


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def phase_offline(args, out: Path) -> dict:
    warm = args.demo / "cold_start" / "model"
    pairs_dir = args.out / "offline" / "pairs"    # shared by every --tag: the warm start is sampled once
    sh(reasoner("distill", "--pairs", "--teacher", str(warm), "--out", str(pairs_dir),
                "data.source=arithmetic", "data.split=train", f"data.num_examples={args.prompts}", "data.seed=2",
                "prompt.template=chat", "sampling.protocol=none", "sampling.n=8", "sampling.temperature=1.0",
                "sampling.top_p=1.0", "sampling.max_new_tokens=96", "verifiers={math: {weight: 1.0}}",
                "pair_rule=best_worst", "progress=false"), out, pairs_dir / "pairs.jsonl")
    pairs = pairs_dir / "pairs.jsonl"
    common = [f"model.path={warm}", f"data.source={pairs}", "prompt.template=chat", f"loss.beta={args.beta}",
              f"optim.lr={args.lr}", "optim.schedule=constant", "optim.warmup_steps=0", f"batch_size={args.batch}",
              f"epochs={args.epochs}", "max_length=256", "progress=false", f"seed={args.seed}"]
    runs = {"dpo": [], "dpo_positive": [f"loss.dpop_lambda={args.dpop_lambda}"]}
    summary = {"warm_start": evaluate(warm, args.out / "offline" / "eval_warm", out),
               "pairs": json.loads((pairs_dir / "pairs.stats.json").read_text()),
               "settings": {"lr": args.lr, "beta": args.beta, "epochs": args.epochs, "dpop_lambda": args.dpop_lambda}}
    for name, extra in runs.items():
        sh(reasoner("dpo", f"out_dir={out / name}", *common, *extra), out, out / name / "model" / "config.json")
        records = read_metrics(out / name / "metrics.jsonl")
        summary[name] = {**evaluate(out / name / "model", out / f"eval_{name}", out),
                         "logps_chosen": [r["logps/chosen"] for r in records],
                         "logps_rejected": [r["logps/rejected"] for r in records],
                         "reward_accuracy_last": records[-1]["rewards/accuracy"]}
    _plot_curves(out / "plots" / "dpo_logps_chosen.png", "DPO steps", "mean summed log-prob of the answers",
                 {f"{n} (chosen)": summary[n]["logps_chosen"] for n in runs}
                 | {f"{n} (rejected)": summary[n]["logps_rejected"] for n in runs})
    return summary


def phase_length(args, out: Path) -> dict:
    steps = [f"steps={args.grpo_steps}", f"prompts_per_step={args.grpo_prompts}", "save_every=0"]  # = online's
    base = grpo(out / "grpo", out, args.demo, *steps)
    pen = grpo(out / "grpo_length_penalty", out, args.demo, *steps,
               f"reward.verifiers={{math: {{weight: 1.0}}, length_penalty: {{weight: {args.length_weight}, "
               f"warmup_steps: {args.length_warmup}}}}}")
    summary = {"warm_start": evaluate(args.demo / "cold_start" / "model", out / "eval_warm", out),
               "grpo": evaluate(base, out / "eval_grpo", out),
               "grpo_length_penalty": evaluate(pen, out / "eval_grpo_length_penalty", out)}
    _plot_points(out / "plots" / "accuracy_vs_length.png", summary)
    return summary


def phase_prioritized(args, out: Path) -> dict:
    mix = ["data.task_options={terms: [3, 8]}", f"data.num_examples={args.mix_prompts}",
           f"steps={args.grpo_steps}", f"prompts_per_step={args.grpo_prompts}", f"save_every={args.save_every}",
           f"keep_checkpoints={args.grpo_steps}"]
    hard = (f"{{name: hard, source: arithmetic, split: test, num_examples: {args.hard_problems}, "
            "task_options: {terms: [8]}}")
    summary: dict = {}
    for name in ("uniform", "prioritized"):
        run = out / name
        grpo(run, out, args.demo, *mix, f"data.sampling={name}")
        curve = [(0, evaluate(args.demo / "cold_start" / "model", out / "eval_hard_warm", out, hard))]
        for ckpt in sorted((run / "checkpoints").glob("step-*")):
            step = int(ckpt.name.split("-")[1])
            curve.append((step, evaluate(ckpt / "model", out / f"eval_hard_{name}_{step}", out, hard)))
        answers = args.grpo_prompts * 8
        summary[name] = [{"step": s, "answers_sampled": s * answers, **m} for s, m in curve]
    _plot_curves(out / "plots" / "hard_pass1.png", "sampled answers", "held-out pass@1, 8-term chains",
                 {n: [p["pass@1"]["mean"] for p in summary[n]] for n in ("uniform", "prioritized")},
                 x={n: [p["answers_sampled"] for p in summary[n]] for n in ("uniform", "prioritized")})
    return summary


def phase_online(args, out: Path) -> dict:
    warm = args.demo / "cold_start" / "model"
    rounds, per_round = args.grpo_steps, args.grpo_prompts
    sh(reasoner("dpo", "--online", f"out_dir={out / 'online_dpo'}", f"model.path={warm}",
                "data.source=arithmetic", "data.num_examples=20000", "prompt.template=chat",
                "sampling.n=8", "sampling.temperature=1.0", "sampling.max_new_tokens=96",
                f"online.rounds={rounds}", f"online.prompts_per_round={per_round}", "online.pair_rule=best_worst",
                f"loss.beta={args.beta}", f"optim.lr={args.lr}", f"loss.dpop_lambda={args.online_dpop_lambda}",
                "optim.schedule=constant", "optim.warmup_steps=0", "max_length=256", "progress=false",
                f"seed={args.seed}"), out, out / "online_dpo" / "model" / "config.json")
    # the GRPO baseline is the length phase's (the same command; it runs here when that phase has not)
    base = grpo(args.out / "length" / "grpo", out, args.demo, f"steps={rounds}", f"prompts_per_step={per_round}",
                "save_every=0")
    return {"answers_sampled_each": rounds * per_round * 8,
            "warm_start": evaluate(warm, args.out / "offline" / "eval_warm", out),
            "grpo": evaluate(base, args.out / "length" / "eval_grpo", out),
            "online_dpo": evaluate(out / "online_dpo" / "model", out / "eval_online_dpo", out)}


def _plot_curves(path: Path, xlabel: str, ylabel: str, series: dict[str, list[float]],
                 x: dict[str, list[float]] | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ys in series.items():
        xs = (x or {}).get(name, list(range(1, len(ys) + 1)))
        ax.plot(xs, ys, marker="." if x else None, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_points(path: Path, summary: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, m in summary.items():
        p, n = m["pass@1"], m["mean_length"]
        ax.errorbar(n["mean"], p["mean"], yerr=[[p["mean"] - p["ci95"][0]], [p["ci95"][1] - p["mean"]]],
                    xerr=[[n["mean"] - n["ci95"][0]], [n["ci95"][1] - n["mean"]]], fmt="o", capsize=3, label=name)
    ax.set_xlabel("held-out mean response length (tokens)")
    ax.set_ylabel("held-out pass@1")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


PHASES = {"offline": phase_offline, "length": phase_length, "prioritized": phase_prioritized,
          "online": phase_online}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phase", choices=sorted(PHASES))
    p.add_argument("--demo", type=Path, default=Path("runs/demo"), help="a finished `reasoner demo` folder")
    p.add_argument("--out", type=Path, default=Path("runs/pref"))
    p.add_argument("--prompts", type=int, default=512, help="offline: training problems sampled for pairs")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--dpop-lambda", type=float, default=5.0)
    p.add_argument("--online-dpop-lambda", type=float, default=0.0)
    p.add_argument("--grpo-steps", type=int, default=40)
    p.add_argument("--grpo-prompts", type=int, default=32)
    p.add_argument("--length-weight", type=float, default=0.5)
    p.add_argument("--length-warmup", type=int, default=5)
    p.add_argument("--mix-prompts", type=int, default=256, help="prioritized: prompts in the easy + hard pool")
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument("--hard-problems", type=int, default=200, help="prioritized: held-out 8-term problems")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="suffix of the phase folder (another setting of the same phase)")
    args = p.parse_args()
    if not (args.demo / "cold_start" / "model" / "config.json").exists():
        sys.exit(f"{args.demo} holds no warm-started model: run `reasoner demo --out {args.demo}` first")
    out = args.out / f"{args.phase}{args.tag}"
    summary = PHASES[args.phase](args, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list)}, indent=2)[:4000])


if __name__ == "__main__":
    main()
