"""Eval outputs: `results.json`, a Markdown table (`results.md`) and PNG plots (pass@k against k; lengths)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasoner.evaluation.aggregate import BenchmarkMetrics
from reasoner.evaluation.core import SampleRecord


def write_results(out_dir: Path, header: dict[str, Any], metrics: Sequence[BenchmarkMetrics]) -> Path:
    path = out_dir / "results.json"
    path.write_text(json.dumps({**header, "benchmarks": {m.name: m.as_dict() for m in metrics}}, indent=2))
    return path


def markdown_table(metrics: Sequence[BenchmarkMetrics]) -> str:
    """One row per benchmark; every number with its 95% interval."""
    ks = sorted({k for m in metrics for k in m.pass_at})
    head = ["benchmark", "problems", "n"] + [f"pass@{k}" for k in ks] + \
        [f"maj@{k}" for k in sorted({k for m in metrics for k in m.maj_at}) if k > 1] + \
        ["length (tokens)", "length correct", "length incorrect", "truncated", "no answer"]
    maj_ks = [int(h[4:]) for h in head if h.startswith("maj@")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in metrics:
        cells = [m.name, str(m.num_problems), str(m.samples_per_problem)]
        cells += [m.pass_at[k].fmt() if k in m.pass_at else "" for k in ks]
        cells += [m.maj_at[k].fmt() if k in m.maj_at else "" for k in maj_ks]
        cells += [m.length.fmt(1), m.length_correct.fmt(1) if m.length_correct else "-",
                  m.length_incorrect.fmt(1) if m.length_incorrect else "-", m.truncation_rate.fmt(),
                  m.no_answer_rate.fmt()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(out_dir: Path, header: dict[str, Any], metrics: Sequence[BenchmarkMetrics],
                   plots: Sequence[Path]) -> Path:
    s = header["sampling"]
    lines = [f"# Evaluation: {header['model']}", "",
             f"Sampling: protocol `{s['protocol']}`, n = {s['n']} per problem, temperature {s['temperature']}, "
             f"top-p {s['top_p']}, max {s['max_new_tokens']} new tokens. pass@k: unbiased estimator, mean over "
             f"problems; maj@k: majority vote over the first k samples; [95% confidence intervals].", "",
             markdown_table(metrics), ""]
    lines += [f"![{p.stem}]({p.relative_to(out_dir)})" for p in plots]
    path = out_dir / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_results(out_dir: Path, metrics: Sequence[BenchmarkMetrics],
                 records: dict[str, Sequence[SampleRecord]]) -> list[Path]:
    """`plots/pass_at_k.png` (all benchmarks) and `plots/lengths_<benchmark>.png` (correct vs incorrect)."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = out_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110)
    for m in metrics:
        ks = sorted(m.pass_curve)
        ax.plot(ks, [m.pass_curve[k] for k in ks], marker="o", label=m.name)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("pass@k (unbiased estimator)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [folder / "pass_at_k.png"]
    fig.savefig(paths[0])
    plt.close(fig)
    for m in metrics:
        recs = records[m.name]
        fig, ax = plt.subplots(figsize=(6, 3.4), dpi=110)
        groups = [("correct", [r.num_tokens for r in recs if r.correct]),
                  ("incorrect", [r.num_tokens for r in recs if not r.correct])]
        top = max(r.num_tokens for r in recs)
        bins = max(1, min(40, top))
        for label, values in groups:
            if values:
                ax.hist(values, bins=bins, range=(0, top + 1), alpha=0.6, label=f"{label} ({len(values)})")
        ax.set_xlabel("response length (tokens)")
        ax.set_ylabel("samples")
        ax.set_title(f"{m.name}: response lengths")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"lengths_{_safe(m.name)}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
