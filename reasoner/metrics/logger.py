"""Metrics every step to `metrics.jsonl` (and the sinks of `log.report_to`); sample completions to `samples.jsonl`.

Only the process that owns logging (rank 0 in multi-process runs) writes; the others get a logger that does
nothing, so call sites need no rank checks.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from reasoner.metrics.sinks import Sink, call_safely, finite_scalars, open_sinks


class MetricsLogger:
    def __init__(self, run_dir: str | Path, *, report_to: list[str] | tuple[str, ...] = ("tensorboard",),
                 enabled: bool = True, project: str = "reasoner", run_name: str | None = None,
                 config: dict[str, Any] | None = None):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
        self._sinks: list[Sink] = []
        if enabled:
            self._sinks = open_sinks(list(report_to), self.run_dir, project=project,
                                     name=run_name or self.run_dir.resolve().name, config=config)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self._sinks = call_safely(self._sinks, "log", step, finite_scalars(metrics))

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        if not self.enabled or not samples:
            return
        with self.samples_path.open("a") as f:
            for sample in samples:
                f.write(json.dumps({"step": step, **sample}) + "\n")
        text = "\n\n---\n\n".join(f"**reward {s.get('reward')}**\n\n```\n{s.get('completion')}\n```"
                                  for s in samples)
        self._sinks = call_safely(self._sinks, "text", step, "samples", text)

    def close(self) -> None:
        self._sinks = call_safely(self._sinks, "close")
        self._sinks = []


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
