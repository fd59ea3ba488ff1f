"""PNG curves of a run from its `metrics.jsonl`: reward, pass@1 vs pass@G, response lengths.

Each curve is drawn raw (thin, faint) and, once there are enough steps, with an exponential moving average on top
(`smoothing`, TensorBoard's convention: 0 off, 0.9 heavy), so a noisy per-step signal still shows its trend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def smooth(values: list[float], weight: float) -> list[float]:
    """Debiased exponential moving average (as TensorBoard's smoothing slider): `weight` in [0, 1)."""
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(last / norm)
    return out


Figure = tuple[str, str, list[tuple[str, str]]]  # title, y label, [(metric key, legend label)]

SFT_FIGURES: dict[str, Figure] = {
    "loss.png": ("SFT loss", "cross-entropy per response token", [("loss", "loss")]),
    "grad_norm.png": ("Gradient norm", "L2 norm before clipping", [("grad_norm", "grad norm")]),
    "lr.png": ("Learning rate", "lr", [("lr", "lr")]),
}


def grpo_figures(records: list[dict[str, Any]]) -> dict[str, Figure]:
    verifier_keys = sorted({k for r in records for k in r if k.startswith("reward/") and k.endswith("/mean")
                            and k.count("/") == 2})
    return {
        "reward.png": ("Reward", "mean reward per sample",
                       [("reward/mean", "total")] + [(k, k.split("/")[1]) for k in verifier_keys]),
        "pass_at_k.png": ("pass@k within groups", "fraction of prompts solved", [("pass@1", "pass@1"),
                                                                                ("pass@G", "pass@G")]),
        "lengths.png": ("Response length", "tokens", [("length/mean", "all"), ("length/correct/mean", "correct"),
                                                      ("length/incorrect/mean", "incorrect"),
                                                      ("length/truncated/mean", "truncated")]),
    }


def plot_run(records: list[dict[str, Any]], out_dir: str | Path, *, smoothing: float = 0.8,
             figures: dict[str, Figure] | None = None) -> list[Path]:
    """Writes one PNG per figure into `out_dir` (default: a GRPO run's reward.png, pass_at_k.png and
    lengths.png); returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if figures is None:
        figures = grpo_figures(records)
    paths = []
    for filename, (title, ylabel, curves) in figures.items():
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        for key, label in curves:
            xs, ys = _series(records, key)
            if not xs:
                continue
            if smoothing and len(xs) >= 10:
                (raw,) = ax.plot(xs, ys, linewidth=0.8, alpha=0.3)
                ax.plot(xs, smooth(ys, smoothing), label=label, linewidth=1.6, color=raw.get_color())
            else:
                ax.plot(xs, ys, label=label, linewidth=1.4)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
