"""The built-in demo, on CPU with no downloads: R1-Zero-style RL on chains of additions with a tiny model.

1. Build a tiny Qwen3-config model and train its tokenizer on the task's text (`reasoner.models.tiny`).
2. Cold start: SFT on a mix of worked solutions (every partial sum inside `<think>`) and bare answers (an empty
   `<think>`, `direct_fraction` of the rows). The warm-started model has both habits and picks one per sample.
3. Evaluate on held-out problems: pass@1 (mean over n samples), pass@G, mean response length.
4. GRPO with the math reward only: nothing tells the model to reason, but worked solutions are right more often,
   so their advantage is positive on average and the policy moves to them: pass@1 and response length rise
   together, as in DeepSeek-R1-Zero.
5. Evaluate again with the same sampling settings, and write `summary.json`, plots and `report.md`.

Every stage goes through the same code a real run uses (`from_pretrained` loading, `reasoner.sft.sft`,
`reasoner.training.train`, the verifiers); only the model size and the task are small.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reasoner.data.datasets import DataConfig
from reasoner.data.tasks import arithmetic, with_direct_answers
from reasoner.models import ModelConfig, TinyModelSpec, build_tiny_model
from reasoner.rollout.base import RolloutConfig
from reasoner.sft import SFTConfig
from reasoner.training.config import AlgorithmConfig, LogConfig, OptimConfig, RewardConfig, TrainConfig


@dataclass
class DemoEvalConfig:
    num_problems: int = 200            # held-out problems (a split disjoint from training)
    samples: int = 8                   # per problem; pass@1 is their mean, pass@G uses all of them
    temperature: float = 1.0           # the temperature GRPO samples at (lower ones hide sampling errors)
    top_p: float = 1.0


def _demo_grpo() -> TrainConfig:
    return TrainConfig(
        data=DataConfig(source="arithmetic", split="train", num_examples=20000),
        rollout=RolloutConfig(group_size=8, temperature=1.0, max_new_tokens=96),
        reward=RewardConfig(verifiers={"math": {"weight": 1.0}}),
        algorithm=AlgorithmConfig(advantage="grpo", loss_agg="token-mean", kl_beta=0.0),
        optim=OptimConfig(lr=1e-4, schedule="constant", max_grad_norm=1.0),
        log=LogConfig(sample_every=10, progress=True),
        steps=100, prompts_per_step=64, save_every=50,
    )


def _demo_sft() -> SFTConfig:
    return SFTConfig(batch_size=64, max_steps=500,
                     optim=OptimConfig(lr=3e-3, schedule="cosine", warmup_steps=10, max_grad_norm=1.0))


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    seed: int = 0
    threads: int = 2
    train_problems: int = 20000
    direct_fraction: float = 0.5       # cold-start rows that answer at once, with an empty <think>
    model: TinyModelSpec = field(default_factory=lambda: TinyModelSpec(
        vocab_size=384, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, head_dim=32,
        intermediate_size=384))
    sft: SFTConfig = field(default_factory=_demo_sft)
    grpo: TrainConfig = field(default_factory=_demo_grpo)
    eval: DemoEvalConfig = field(default_factory=DemoEvalConfig)


def run_demo(cfg: DemoConfig) -> dict:
    from reasoner.config import save_config
    from reasoner.metrics.logger import read_metrics
    from reasoner.sft import sft
    from reasoner.training import train

    start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    torch.set_num_threads(cfg.threads)
    train_rows = arithmetic(cfg.train_problems, split="train", seed=cfg.seed)
    test_rows = arithmetic(cfg.eval.num_problems, split="test", seed=cfg.seed)

    print("[demo] 1/5 building the tiny model and its tokenizer")
    corpus = [f"{r['problem']} {r['response']}" for r in train_rows[:5000]]
    init_path = build_tiny_model(out / "init", corpus, cfg.model)

    print(f"[demo] 2/5 SFT warm start: worked solutions, {cfg.direct_fraction:.0%} of them replaced by bare answers")
    cfg.sft.model = ModelConfig(path=str(init_path))
    cfg.sft.out_dir, cfg.sft.seed, cfg.sft.threads = str(out / "sft"), cfg.seed, cfg.threads
    sft_model = sft(cfg.sft, rows=with_direct_answers(train_rows, cfg.direct_fraction, seed=cfg.seed)).final_model

    print("[demo] 3/5 evaluating the warm-started model")
    before = evaluate_model(sft_model, test_rows, cfg)

    print("[demo] 4/5 GRPO")
    cfg.grpo.model = ModelConfig(path=str(sft_model))
    cfg.grpo.out_dir, cfg.grpo.seed, cfg.grpo.threads = str(out / "grpo"), cfg.seed, cfg.threads
    cfg.grpo.data.seed = cfg.seed
    result = train(cfg.grpo)

    print("[demo] 5/5 evaluating the GRPO model")
    after = evaluate_model(result.final_model, test_rows, cfg)

    g = cfg.eval.samples
    summary = {
        "pass1_before": before["pass@1"], "pass1_after": after["pass@1"],
        "passG_before": before[f"pass@{g}"], "passG_after": after[f"pass@{g}"], "G": g,
        "mean_length_before": before["mean_length"], "mean_length_after": after["mean_length"],
        "bare_answer_share_before": before["bare_answer_share"], "bare_answer_share_after": after["bare_answer_share"],
        "accuracy_worked_before": before["accuracy_worked"], "accuracy_bare_before": before["accuracy_bare"],
        "accuracy_worked_after": after["accuracy_worked"], "accuracy_bare_after": after["accuracy_bare"],
        "held_out_problems": cfg.eval.num_problems, "eval_temperature": cfg.eval.temperature,
        "grpo_steps": result.steps, "wall_minutes": (time.perf_counter() - start) / 60,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_report(out, summary, before, after, read_metrics(result.out_dir / "metrics.jsonl"))
    return summary


def evaluate_model(model_path: Path, rows: list[dict], cfg: DemoConfig) -> dict:
    from reasoner.data import build_prompts
    from reasoner.evaluation import evaluate_prompts, summarize
    from reasoner.models import load_model, load_tokenizer
    from reasoner.rollout.base import SamplingParams
    from reasoner.rollout.hf_engine import HFEngine
    from verifiers import RewardSpec

    tokenizer = load_tokenizer(str(model_path))
    model = load_model(ModelConfig(path=str(model_path)), trainable=False)
    prompts = build_prompts(tokenizer, rows, template=cfg.grpo.data.template)
    spec = RewardSpec.from_config(cfg.grpo.reward.verifiers)
    torch.manual_seed(cfg.seed + 1)  # the same sampling noise for the before and after evaluations
    try:
        params = SamplingParams(n=cfg.eval.samples, temperature=cfg.eval.temperature, top_p=cfg.eval.top_p,
                                max_new_tokens=cfg.grpo.rollout.max_new_tokens)
        records = evaluate_prompts(HFEngine(model, tokenizer), tokenizer, prompts, spec, params)
    finally:
        spec.close()
    metrics = summarize(records, ks=(1, cfg.eval.samples)).as_dict()
    bare = [r for r in records if _is_bare_answer(r.completion)]
    worked = [r for r in records if not _is_bare_answer(r.completion)]
    metrics["bare_answer_share"] = len(bare) / max(1, len(records))
    metrics["accuracy_bare"] = sum(r.correct for r in bare) / len(bare) if bare else None
    metrics["accuracy_worked"] = sum(r.correct for r in worked) / len(worked) if worked else None
    return metrics


def _is_bare_answer(completion: str) -> bool:
    """An empty `<think>` (whitespace only): the model answered without working it out."""
    head, sep, _ = completion.partition("</think>")
    return bool(sep) and not head.replace("<think>", "").strip()


def _write_report(out: Path, summary: dict, before: dict, after: dict, records: list[dict]) -> None:
    from reasoner.metrics.plots import plot_run
    from reasoner.metrics.report import write_report

    plots = plot_run(records, out / "plots") if records else []
    g = summary["G"]
    notes = [
        "## Held-out evaluation",
        f"{summary['held_out_problems']} problems, {g} samples each at temperature {summary['eval_temperature']}.",
        "",
        "| | pass@1 | pass@G | mean length (tokens) | bare answers | accuracy worked / bare |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {m['pass@1']:.3f} | {m[f'pass@{g}']:.3f} | {m['mean_length']:.1f} | "
          f"{m['bare_answer_share']:.1%} | {_fmt(m['accuracy_worked'])} / {_fmt(m['accuracy_bare'])} |"
          for name, m in (("warm start (SFT)", before), ("after GRPO", after))),
        "",
        "## GRPO training curves",
    ]
    write_report(out / "report.md", title="reasoner demo: GRPO on chains of additions", records=records,
                 plots=plots, summary=summary, notes=["\n".join(notes)])


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
