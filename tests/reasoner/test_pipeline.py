"""The R1 pipeline with tiny budgets: stages wired output -> input, skipped when done, re-run when changed."""
from __future__ import annotations

import json

import pytest

from reasoner.config import ConfigError, load_config
from reasoner.pipeline import PipelineConfig, run_pipeline

TINY = ["init.corpus_examples=300", "init.spec={vocab_size: 384, hidden_size: 64, num_layers: 2, num_heads: 4, "
        "num_kv_heads: 2, head_dim: 16, intermediate_size: 128, max_position_embeddings: 512}"]
BUDGETS = [
    "cold_start.data.num_examples=32", "cold_start.max_steps=2", "cold_start.batch_size=8",
    "cold_start.log.progress=false",
    "grpo.data.num_examples=32", "grpo.steps=1", "grpo.prompts_per_step=2", "grpo.sampling.n=2",
    "grpo.sampling.max_new_tokens=12", "grpo.log={report_to: [], progress: false, plots: false}",
    "distill.data.num_examples=4", "distill.sampling.n=2", "distill.sampling.max_new_tokens=12",
    "distill.accept=all", "distill.drop_truncated=false", "distill.progress=false",  # a random model solves nothing
    "student.max_steps=2", "student.batch_size=4", "student.row_format=prompt_response", "student.log.progress=false",
    "eval.benchmarks={name: arithmetic, num_examples: 3}", "eval.sampling.n=2", "eval.sampling.max_new_tokens=8",
    "eval.progress=false", "eval.plots=false", "eval_models=[grpo, student]",
]


def _cfg(out, *extra) -> PipelineConfig:
    return load_config(PipelineConfig, None, [f"out_dir={out}", *TINY, *BUDGETS, *extra])


def _stage(out, name):
    return json.loads((out / name / "stage.json").read_text())


def test_pipeline_wires_stages_resumes_and_reruns_what_changed(tmp_path):
    out = tmp_path / "p"
    logs: list[str] = []
    first = run_pipeline(_cfg(out), log=logs.append)
    assert first.ran == ["init", "cold_start", "grpo", "distill", "student", "eval"]
    o = first.outputs
    # each stage's outputs are the next one's inputs
    assert json.loads(json.dumps(load_yaml(out / "cold_start" / "config.yaml")["model"]["path"])) == o["init"]["model"]
    assert load_yaml(out / "grpo" / "config.yaml")["model"]["path"] == o["cold_start"]["model"]
    assert load_yaml(out / "distill" / "sft.config.yaml")["teacher"]["path"] == o["grpo"]["model"]
    student_cfg = load_yaml(out / "student" / "config.yaml")
    assert student_cfg["model"]["path"] == o["init"]["model"]            # a fresh student from the base model
    assert student_cfg["data"]["source"] == o["distill"]["data"] and o["distill"]["rows"] == 8  # 4 prompts x 2
    assert set(o["eval"]) == {"grpo", "student"}
    results = json.loads((out / "eval" / "student" / "results.json").read_text())
    assert results["model"] == o["student"]["model"] and results["benchmarks"]["arithmetic"]["num_problems"] == 3
    assert all(_stage(out, s)["status"] == "done" for s in first.ran)

    # Nothing changed: every stage is skipped.
    again = run_pipeline(_cfg(out), log=logs.append)
    assert again.ran == [] and again.outputs == first.outputs

    # A student setting changed: the student and everything after it run again, nothing before.
    changed = run_pipeline(_cfg(out, "student.max_steps=3"), log=logs.append)
    assert changed.ran == ["student", "eval"]
    assert any("student: settings or inputs changed" in line for line in logs)

    # An interrupted stage (started, never done) runs again; later stages follow through the fingerprint chain
    # only if its fingerprint changed, which it did not: they stay done.
    record = _stage(out, "distill")
    (out / "distill" / "stage.json").write_text(json.dumps({**record, "status": "started"}))
    resumed = run_pipeline(_cfg(out, "student.max_steps=3"), log=logs.append)
    assert resumed.ran == ["distill"]
    assert (out / "distill" / "samples.jsonl").exists()

    # Later stages alone reuse the recorded outputs of earlier invocations.
    only_eval = run_pipeline(_cfg(out, "student.max_steps=3", "stages=[eval]", "eval.sampling.n=1"),
                             log=logs.append)
    assert only_eval.ran == ["eval"]


def load_yaml(path):
    import yaml
    return yaml.safe_load(path.read_text())


def test_pipeline_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="must be in pipeline order"):
        run_pipeline(_cfg(tmp_path, "stages=[grpo, cold_start]"))
    with pytest.raises(ConfigError, match="unknown stage.*polish"):
        run_pipeline(_cfg(tmp_path, "stages=[polish]"))
    with pytest.raises(ConfigError, match="eval_models: distill produce no model"):
        run_pipeline(_cfg(tmp_path, "eval_models=[distill]"))
    with pytest.raises(ConfigError, match="no base model"):
        run_pipeline(_cfg(tmp_path, "stages=[cold_start]"))


def test_a_pipeline_seed_replaces_every_seed_of_a_stage():
    from reasoner.pipeline.run import set_seeds

    cfg = load_config(PipelineConfig, "demo", ["seed=7"])
    grpo, evaluation = cfg.grpo, {"seed": 0, "benchmarks": [{"name": "arithmetic", "seed": 0}, "aime24"]}
    set_seeds(grpo, 7)
    set_seeds(evaluation, 7)
    assert (grpo.seed, grpo.data.seed, grpo.engine.vllm.seed) == (7, 7, 7)
    assert evaluation == {"seed": 7, "benchmarks": [{"name": "arithmetic", "seed": 7}, "aime24"]}
    assert grpo.optim.lr == 1e-4  # nothing else changes


def test_packaged_demo_pipeline_config_loads():
    from pathlib import Path

    import reasoner
    cfg = load_config(PipelineConfig, Path(reasoner.__file__).parent / "configs" / "pipeline_demo.yaml")
    assert cfg.stages[0] == "init" and cfg.distill.require_format and cfg.student.row_format == "prompt_response"
    assert cfg.cold_start.optim.schedule == "cosine" and cfg.eval.sampling.resolve()["temperature"] == 0.6
