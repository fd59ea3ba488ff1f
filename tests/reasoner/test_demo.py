"""The built-in demo: the cold-start mix, and a run on a tiny budget that writes every promised output."""
from __future__ import annotations

import json

import pytest

from reasoner.config import load_config
from reasoner.data.tasks import arithmetic, with_direct_answers
from reasoner.demo import DemoConfig, _is_bare_answer, run_demo


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


@pytest.mark.parametrize("completion, bare", [
    ("<think>\n</think>\n<answer>7</answer>", True),
    ("\n</think>\n<answer>7</answer>", True),            # the template put <think> in the prompt
    ("<think>\n3+4=7\n</think>\n<answer>7</answer>", False),
    ("<answer>7</answer>", False),                          # no think block at all is not an empty one
])
def test_bare_answer_detection(completion, bare):
    assert _is_bare_answer(completion) is bare


def test_demo_on_a_tiny_budget_writes_summary_report_and_curves(tmp_path):
    cfg = load_config(DemoConfig, None, [
        f"out={tmp_path / 'demo'}", "train_problems=300", "threads=1",
        "model={vocab_size: 320, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, head_dim: 16, "
        "intermediate_size: 64}",
        "sft.max_steps=3", "sft.batch_size=8", "sft.progress=false",
        "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.rollout.group_size=2", "grpo.rollout.max_new_tokens=16",
        "grpo.log.progress=false", "eval.num_problems=4", "eval.samples=2"])
    assert cfg.sft.optim.lr == 3e-3 and cfg.grpo.optim.lr == 1e-4  # one-key overrides keep the demo's defaults
    summary = run_demo(cfg)
    out = tmp_path / "demo"
    assert json.loads((out / "summary.json").read_text()) == summary
    for key in ("pass1_before", "pass1_after", "passG_before", "passG_after", "bare_answer_share_before",
                "bare_answer_share_after"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["passG_before"] >= summary["pass1_before"] and summary["grpo_steps"] == 2
    assert summary["wall_minutes"] > 0
    assert {"reward.png", "lengths.png"} <= {p.name for p in (out / "plots").iterdir()}
    report = (out / "report.md").read_text()
    assert "Held-out evaluation" in report
    assert "|---|---|---|---|---|---|\n| warm start (SFT) |" in report  # one table, not rows split by blank lines
    assert (out / "grpo" / "model" / "config.json").exists()
