"""A short Markdown report of a run: headline numbers, first vs last step, the plots."""
from __future__ import annotations

from pathlib import Path
from typing import Any

HEADLINE = ["reward/mean", "pass@1", "pass@G", "length/mean", "length/correct/mean", "length/incorrect/mean",
            "truncation_ratio", "zero_variance_groups", "entropy", "kl", "clip_frac_low", "clip_frac_high",
            "grad_norm", "tokens_per_s", "time/step"]


def _window_mean(records: list[dict[str, Any]], key: str, first: bool, width: int = 5) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    values = values[:width] if first else values[-width:]
    return sum(values) / len(values) if values else None


SFT_HEADLINE = ["loss", "grad_norm", "lr", "tokens", "time/step"]


def write_report(path: str | Path, *, title: str, records: list[dict[str, Any]], plots: list[Path],
                 summary: dict[str, Any] | None = None, notes: list[str] | None = None,
                 headline: list[str] = HEADLINE) -> Path:
    path = Path(path)
    lines = [f"# {title}", ""]
    if summary:
        lines += ["| | |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in summary.items()] + [""]
    if records:
        lines += [f"Steps logged: {len(records)} (means of the first and last 5 logged steps)", "",
                  "| metric | start | end |", "|---|---|---|"]
        for key in headline:
            start, end = _window_mean(records, key, True), _window_mean(records, key, False)
            if start is not None:
                lines.append(f"| {key} | {_fmt(start)} | {_fmt(end)} |")
        lines.append("")
    for note in notes or []:
        lines += [note, ""]
    for plot in plots:
        lines += [f"![{plot.stem}]({plot.relative_to(path.parent) if plot.is_relative_to(path.parent) else plot})",
                  ""]
    path.write_text("\n".join(lines))
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
