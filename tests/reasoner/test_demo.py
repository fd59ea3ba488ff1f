"""The built-in demo: the cold-start mix, and a run on a tiny budget that writes every promised output."""
from __future__ import annotations

import json

import pytest

from reasoner.config import ConfigError, load_config
from reasoner.data.tasks import arithmetic, make_task_rows, with_direct_answers
from reasoner.demo import DEMO_CONFIG, run_demo
from reasoner.evaluation.hooks import bare_answers
from reasoner.evaluation.hooks import is_bare_answer as _is_bare_answer
from reasoner.pipeline import PipelineConfig


def test_direct_answer_mix_is_seeded_and_keeps_answers():
    rows = arithmetic(400, split="train")
    assert with_direct_answers(rows, 0.0) == rows
    everything = with_direct_answers(rows, 1.0)
    assert all(r["response"] == f"<think>\n</think>\n<answer>{r['answer']}</answer>" for r in everything)
    mixed = with_direct_answers(rows, 0.5, seed=3)
    assert mixed == with_direct_answers(rows, 0.5, seed=3) and mixed != with_direct_answers(rows, 0.5, seed=4)
    bare = sum(_is_bare_answer(r["response"]) for r in mixed)
    assert 150 < bare < 250
    assert [r["answer"] for r in mixed] == [r["answer"] for r in rows]
    assert rows[0]["response"].count("=") > 0  # the input is not modified
    with pytest.raises(ValueError, match="fraction"):
        with_direct_answers(rows, 1.5)
    # the demo's cold-start data source: the same rows as a task option
    assert make_task_rows("arithmetic", 400, split="train", seed=3, direct_fraction=0.5) == \
        with_direct_answers(arithmetic(400, split="train", seed=3), 0.5, seed=3)
    with pytest.raises(ConfigError, match="no option 'fraction' .*direct_fraction"):
        make_task_rows("arithmetic", 4, split="train", seed=0, fraction=0.5)


@pytest.mark.parametrize("completion, bare", [
    ("<think>\n</think>\n<answer>7</answer>", True),
    ("\n</think>\n<answer>7</answer>", True),            # the template put <think> in the prompt
    ("<think>\n3+4=7\n</think>\n<answer>7</answer>", False),
    ("<answer>7</answer>", False),                          # no think block at all is not an empty one
])
def test_bare_answer_detection(completion, bare):
    assert _is_bare_answer(completion) is bare


def test_bare_answers_hook_splits_accuracy_by_habit():
    from reasoner.evaluation import SampleRecord

    def rec(text, correct):
        return SampleRecord("p", 0, text, 3, "stop", correct, float(correct))
    records = [rec("<think>\n</think><answer>7</answer>", True), rec("<think>\n</think><answer>6</answer>", False),
               rec("<think>3+4=7</think><answer>7</answer>", True), rec("<answer>7</answer>", False)]
    assert bare_answers(records) == {"bare_answer_share": 0.5, "accuracy_bare": 0.5, "accuracy_worked": 0.5}
    assert bare_answers(records[2:3]) == {"bare_answer_share": 0.0, "accuracy_bare": None, "accuracy_worked": 1.0}


def test_demo_on_a_tiny_budget_writes_summary_report_and_curves(tmp_path):
    cfg = load_config(PipelineConfig, DEMO_CONFIG, [
        f"out_dir={tmp_path / 'demo'}", "threads=1", "init.corpus_examples=300",
        "init.spec={vocab_size: 320, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, head_dim: 16, "
        "intermediate_size: 64}",
        "cold_start.data.num_examples=300", "cold_start.max_steps=3", "cold_start.batch_size=8",
        "cold_start.log.progress=false", "grpo.data.num_examples=300",
        "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.sampling.n=2", "grpo.sampling.max_new_tokens=16",
        "grpo.log.progress=false", "eval.benchmarks=[{name: arithmetic, num_examples: 4, metrics: [bare_answers]}]",
        "eval.sampling.n=2", "eval.ks=[1, 2]", "eval.progress=false"])
    # one-key overrides keep the demo's other defaults
    assert cfg.cold_start.optim.lr == 3e-3 and cfg.grpo.optim.lr == 1e-4 and cfg.grpo.sampling.temperature == 1.0
    assert cfg.cold_start.data.task_options == {"direct_fraction": 0.5}
    summary = run_demo(cfg, log=lambda _: None)
    out = tmp_path / "demo"
    assert json.loads((out / "summary.json").read_text()) == summary
    for key in ("pass1_before", "pass1_after", "passG_before", "passG_after", "bare_answer_share_before",
                "bare_answer_share_after"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["passG_before"] >= summary["pass1_before"] and summary["grpo_steps"] == 2 and summary["G"] == 2
    assert summary["held_out_problems"] == 4
    assert summary["wall_minutes"] > 0
    assert {"reward.png", "lengths.png"} <= {p.name for p in (out / "plots").iterdir()}
    report = (out / "report.md").read_text()
    assert "Held-out evaluation" in report
    assert "|---|---|---|---|---|---|\n| warm start (SFT) |" in report  # one table, not rows split by blank lines
    assert (out / "grpo" / "model" / "config.json").exists()
