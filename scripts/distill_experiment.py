"""Does rejection sampling help? Verified teacher traces vs the same number of unfiltered ones, on the demo task.

    python scripts/distill_experiment.py --demo runs/demo --out runs/distill_experiment

Teacher: the GRPO model of a `reasoner demo` run (`<demo>/grpo/model`); student: that run's untrained tiny model
(`<demo>/init/model`). When `<demo>` holds no finished run, the demo is run first, with the demo's settings except
`--demo-sft-steps` and `--demo-grpo-steps`. Steps, all through the library's own entry points:
1. `distill`: n samples per training-split problem from the teacher, graded by the math + format verifiers;
   "verified" keeps one R1-formatted, correct, untruncated trace per problem (chosen at random among them).
2. `distill` again on the same samples (nothing re-sampled): "unfiltered" keeps one random sample per problem,
   whatever its grade, and is cut to exactly as many rows as "verified".
3. `sft` of two fresh copies of the student, identical settings, one per data set.
4. `run_eval` of both students on the demo's held-out problems (a split disjoint from training).
The last two lines printed are the two pass@1 numbers. Every stage resumes if the script is run again; with
`--students` the two students can be trained in separate processes, and a final run prints both numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", default="runs/demo", help="a finished `reasoner demo` folder")
    p.add_argument("--demo-sft-steps", type=int, help="demo SFT steps, if it must be run (default: the demo's)")
    p.add_argument("--demo-grpo-steps", type=int, help="demo GRPO steps, if it must be run (default: the demo's)")
    p.add_argument("--teacher", help="teacher model (default <demo>/grpo/model)")
    p.add_argument("--student", help="student initial model (default <demo>/init/model)")
    p.add_argument("--out", default="runs/distill_experiment")
    p.add_argument("--prompts", type=int, default=3000, help="training-split problems to sample")
    p.add_argument("--n", type=int, default=4, help="teacher samples per problem")
    p.add_argument("--temperature", type=float, default=1.0, help="teacher and eval temperature")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--steps", type=int, default=800, help="student SFT steps (to convergence: see the README)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-problems", type=int, default=200)
    p.add_argument("--eval-samples", type=int, default=8)
    p.add_argument("--eval-teacher", action="store_true", help="also evaluate the teacher")
    p.add_argument("--students", default="verified,unfiltered",
                   help="which students this invocation trains and evaluates: verified, unfiltered, both "
                        "(comma-separated) or none; run one per process to train them in parallel")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def ensure_demo(args, demo: Path) -> None:
    """Run the demo into `demo` unless it already holds a finished one (its summary.json)."""
    if (demo / "summary.json").exists():
        return
    from reasoner.config import load_config
    from reasoner.demo import DEMO_CONFIG, run_demo
    from reasoner.pipeline import PipelineConfig

    cfg = load_config(PipelineConfig, DEMO_CONFIG, [f"out_dir={demo}", f"seed={args.seed}", f"threads={args.threads}"])
    if args.demo_sft_steps:
        cfg.cold_start.max_steps = args.demo_sft_steps
    if args.demo_grpo_steps:
        cfg.grpo.steps = args.demo_grpo_steps
        cfg.grpo.save_every = min(cfg.grpo.save_every, max(1, args.demo_grpo_steps // 2))
    print(f"[experiment] running the demo into {demo}: {cfg.cold_start.max_steps} SFT steps, "
          f"{cfg.grpo.steps} GRPO steps")
    print(json.dumps(run_demo(cfg), indent=2))


def distill_data(args, teacher: str, out: Path) -> dict[str, dict]:
    from reasoner.config import load_config
    from reasoner.distill import DistillConfig, distill, format_stats

    base = [f"teacher.path={teacher}", f"out_dir={out / 'distill'}", "data.source=arithmetic",
            "data.split=train", f"data.num_examples={args.prompts}", "data.seed=1", "sampling.protocol=r1",
            f"sampling.n={args.n}", f"sampling.temperature={args.temperature}",
            f"sampling.max_new_tokens={args.max_new_tokens}",
            "verifiers={math: {}, format: {weight: 0.0}}", f"seed={args.seed}", "progress=true"]
    verified = distill(load_config(DistillConfig, None, base + [
        "accept=verified", "require_format=true", "drop_truncated=true", "select=random", "output=verified.jsonl"]))
    print(f"[experiment] verified traces:\n{format_stats(verified.stats)}")
    if verified.rows == 0:
        raise SystemExit("error: the teacher produced no verified trace; use a trained teacher (the demo's GRPO "
                         "model), more samples (--n) or more problems (--prompts)")
    unfiltered = distill(load_config(DistillConfig, None, base + [
        "accept=all", "drop_truncated=false", "dedup=false", "select=random", f"max_rows={verified.rows}",
        "output=unfiltered.jsonl"]))
    print(f"[experiment] unfiltered samples:\n{format_stats(unfiltered.stats)}")
    return {"verified": {"path": str(verified.output), **verified.stats},
            "unfiltered": {"path": str(unfiltered.output), **unfiltered.stats}}


def train_student(args, student: str, data: str, out: Path) -> str:
    from reasoner.config import load_config
    from reasoner.sft import SFTConfig, sft

    final = out / "model"
    if (final / "config.json").exists() and (out / "done").exists():
        return str(final)
    cfg = load_config(SFTConfig, None, [
        f"model.path={student}", f"data.source={data}", "prompt.template=chat", "row_format=prompt_response",
        f"batch_size={args.batch_size}", f"max_steps={args.steps}", "max_length=256", f"seed={args.seed}",
        f"optim={{lr: {args.lr}, schedule: cosine, warmup_steps: 10, max_grad_norm: 1.0}}", f"out_dir={out}"])
    result = sft(cfg)
    (out / "done").write_text(f"final loss {result.final_loss}\n")
    return str(result.final_model)


def evaluate(args, model: str, out: Path):
    from reasoner.config import load_config
    from reasoner.evaluation import EvalConfig, run_eval

    cfg = load_config(EvalConfig, None, [
        f"model.path={model}", f"out_dir={out}",
        f"benchmarks={{name: arithmetic, num_examples: {args.eval_problems}, seed: {args.seed}}}",
        "sampling.protocol=r1", f"sampling.n={args.eval_samples}", f"sampling.temperature={args.temperature}",
        f"sampling.max_new_tokens={args.max_new_tokens}", f"seed={args.seed}", "verifiers={math: {}}",
        "ks=[1, 8]", "prompt.template=chat"])
    return run_eval(cfg).metrics[0]


def paired_difference(out: Path):
    """pass@1 of the verified student minus the unfiltered one, paired by problem (same problems, same n)."""
    from reasoner.evaluation import SampleRecord
    from reasoner.evaluation.aggregate import paired_pass1_difference

    def records(name: str) -> list:
        (path,) = (out / f"eval_{name}").glob("*/samples.jsonl")
        return [SampleRecord.from_json(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]

    return paired_pass1_difference(records("verified"), records("unfiltered"))


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args()
    import torch
    torch.set_num_threads(args.threads)
    demo, out = Path(args.demo), Path(args.out)
    start = time.perf_counter()
    teacher, student = args.teacher or str(demo / "grpo" / "model"), args.student or str(demo / "init" / "model")
    if not args.teacher or not args.student:
        ensure_demo(args, demo)
    for path in (teacher, student):
        if not (Path(path) / "config.json").exists():
            print(f"error: {path} is not a model folder; run `reasoner demo --out {demo}` first", file=sys.stderr)
            return 2
    data = distill_data(args, teacher, out)
    results = {"teacher": teacher, "student_init": student, "args": vars(args), "data": data}
    if args.eval_teacher:
        results["teacher_eval"] = evaluate(args, teacher, out / "eval_teacher").as_dict()
    metrics = {}
    wanted = [] if args.students == "none" else args.students.split(",")
    for name in ("verified", "unfiltered"):
        # a student trained and evaluated by another invocation (--students) is only re-aggregated here
        if name in wanted or (out / f"eval_{name}" / "results.json").exists():
            model = train_student(args, student, data[name]["path"], out / f"student_{name}")
            metrics[name] = evaluate(args, model, out / f"eval_{name}")
            results[f"student_{name}"] = metrics[name].as_dict()
    if len(metrics) < 2:
        print(f"[experiment] students done so far: {', '.join(metrics) or 'none'}; run again with the others")
        return 0
    results["wall_minutes"] = (time.perf_counter() - start) / 60
    (out / "results.json").write_text(json.dumps(results, indent=2))
    v, u = metrics["verified"], metrics["unfiltered"]
    print(f"[experiment] {data['verified']['rows']} training rows each; students evaluated on "
          f"{v.num_problems} held-out problems x {v.samples_per_problem} samples at temperature {args.temperature}")
    if args.eval_teacher:
        t = results["teacher_eval"]["pass@1"]
        print(f"[experiment] teacher pass@1: {t['mean']:.3f} [{t['ci95'][0]:.3f}, {t['ci95'][1]:.3f}]")
    print(f"[experiment] results: {out / 'results.json'}; {results['wall_minutes']:.1f} min")
    diff = paired_difference(out)
    results["pass1_difference_paired"] = diff.as_dict()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"pass@1 verified - unfiltered, paired by problem: {diff.fmt()}")
    print(f"pass@1 student on verified traces:   {v.pass_at[1].fmt()}")
    print(f"pass@1 student on unfiltered samples: {u.pass_at[1].fmt()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
