"""The built-in demo, on CPU with no downloads: R1-Zero-style RL on chains of additions with a tiny model.

`reasoner demo` runs the pipeline config `demo` (`reasoner/configs/demo.yaml`) through `reasoner.pipeline`:
1. init: a tiny Qwen3-config model and a tokenizer trained on the task's text (`reasoner.models.tiny`).
2. cold_start: SFT on a mix of worked solutions (every partial sum inside `<think>`) and bare answers (an empty
   `<think>`, `data.task_options.direct_fraction` of the rows). The warm-started model has both habits and picks
   one per sample.
3. grpo: the math reward only. Nothing tells the model to reason, but worked solutions are right more often, so
   their advantage is positive on average and the policy moves to them: pass@1 and response length rise
   together, as in DeepSeek-R1-Zero.
4. eval: both models on held-out problems with the same sampling settings (`reasoner eval`, with the
   `bare_answers` metric hook); this module then writes `summary.json` and `report.md` comparing them.

Every stage goes through the code a real run uses (`from_pretrained` loading, `reasoner sft`, `reasoner train`,
`reasoner eval`, the verifiers); only the model size and the task are small.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from reasoner.pipeline import PipelineConfig, PipelineResult, run_pipeline

DEMO_CONFIG = "demo"  # shipped in reasoner/configs/
BEFORE, AFTER = "cold_start", "grpo"


def run_demo(cfg: PipelineConfig, log=print) -> dict[str, Any]:
    """Runs (or resumes) the demo pipeline; writes and returns the before/after summary."""
    start = time.perf_counter()
    result = run_pipeline(cfg, log=log)
    before, after = (_held_out(result, name) for name in (BEFORE, AFTER))
    g = cfg.eval.sampling.group_size
    summary = {
        "pass1_before": before["pass@1"]["mean"], "pass1_after": after["pass@1"]["mean"],
        "passG_before": before[f"pass@{g}"]["mean"], "passG_after": after[f"pass@{g}"]["mean"], "G": g,
        "mean_length_before": before["mean_length"]["mean"], "mean_length_after": after["mean_length"]["mean"],
        **{f"{key}_{when}": m["extra"][key] for when, m in (("before", before), ("after", after))
           for key in ("bare_answer_share", "accuracy_worked", "accuracy_bare")},
        "held_out_problems": before["num_problems"], "eval_temperature": cfg.eval.sampling.resolve()["temperature"],
        "grpo_steps": result.outputs[AFTER]["steps"], "wall_minutes": (time.perf_counter() - start) / 60,
    }
    out = Path(cfg.out_dir)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_report(out, summary, before, after)
    return summary


def _held_out(result: PipelineResult, model: str) -> dict[str, Any]:
    """The eval stage's metrics of `model` on the (first) held-out benchmark, as `results.json` records them."""
    results = json.loads(Path(result.outputs["eval"][model]["results"]).read_text())
    return next(iter(results["benchmarks"].values()))


def _write_report(out: Path, summary: dict, before: dict, after: dict) -> None:
    from reasoner.metrics.logger import read_metrics
    from reasoner.metrics.plots import plot_run
    from reasoner.metrics.report import write_report

    records = read_metrics(out / AFTER / "metrics.jsonl")
    plots = plot_run(records, out / "plots") if records else []
    g = summary["G"]

    def row(name: str, m: dict) -> str:
        x = m["extra"]
        return (f"| {name} | {m['pass@1']['mean']:.3f} | {m[f'pass@{g}']['mean']:.3f} | "
                f"{m['mean_length']['mean']:.1f} | {x['bare_answer_share']:.1%} | "
                f"{_fmt(x['accuracy_worked'])} / {_fmt(x['accuracy_bare'])} |")

    notes = [
        "## Held-out evaluation",
        f"{summary['held_out_problems']} problems, {g} samples each at temperature {summary['eval_temperature']}.",
        "",
        "| | pass@1 | pass@G | mean length (tokens) | bare answers | accuracy worked / bare |",
        "|---|---|---|---|---|---|",
        row("warm start (SFT)", before),
        row("after GRPO", after),
        "",
        "## GRPO training curves",
    ]
    write_report(out / "report.md", title="reasoner demo: GRPO on chains of additions", records=records,
                 plots=plots, summary=summary, notes=["\n".join(notes)])


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
