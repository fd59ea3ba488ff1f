"""Bad input to any `reasoner` subcommand: one line naming what is wrong, a non-zero exit, no traceback
(`reasoner --debug ...` shows it), and nothing already computed lost."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasoner import cli

REPO = Path(__file__).resolve().parents[2]


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    rc = cli.main(list(argv))
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.mark.parametrize("argv, message", [
    (["train", "model.path=/nonexistent"], "model /nonexistent: no such file or directory"),
    (["sft", "model.path=/nonexistent"], "model /nonexistent: no such file or directory"),
    (["eval", "--model", "/nonexistent", "benchmarks=[arithmetic]"], "model /nonexistent: no such file"),
    (["distill", "--teacher", "./missing/teacher"], "model ./missing/teacher: no such file or directory"),
    (["rm", "model.path=/nonexistent"], "model /nonexistent: no such file or directory"),
    (["rm", "critic.lr=1"], "unknown config key 'critic'; valid keys: batch_size, center_coef"),
    (["train", "model.path=Qwen/Qwen2.5-0.5B"], "Qwen/Qwen2.5-0.5B: not a local folder, and the hub is offline"),
    (["serve", "model=/nonexistent", "host=0.0.0.0"], "host=0.0.0.0 is reachable from other machines"),
    (["train", "rollout.group_size=4"], "config key 'rollout.group_size' was renamed: use 'sampling.n'"),
    (["train", "steps=-3"], "'steps' must be >= 1, got -3"),
    (["demo", "out=runs/x"], "config key 'out' was renamed: use 'out_dir'"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(capsys, argv, message):
    rc, lines = _run(capsys, *argv)
    assert rc != 0
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith(f"reasoner {argv[0]}: error:"), lines


@pytest.mark.parametrize("override, message", [
    ("algorithm.advantage=gae2", "algorithm.advantage: unknown advantage estimator 'gae2'; valid: dr_grpo, gae, grpo"),
    ("algorithm.loss_agg=seq-mean", "algorithm.loss_agg: unknown loss aggregation mode 'seq-mean'"),
    ("reward.verifiers={mth: {}}", "reward.verifiers: unknown verifier 'mth'; valid names: code, format"),
    ("reward.verifiers.math.mode=loose", "reward.verifiers: math: option 'mode'"),
    ("engine=vllm", "engine.name=vllm, but vLLM is not installed"),
    ("sampling.stop_strings=[' and then']", "sampling.stop_strings: ' and then' is"),
    ("prompt.max_prompt_tokens=4", "prompt of example 'train-0' has 33 tokens, more than prompt.max_prompt_tokens=4"),
    ("prompt.template=alpaca", "prompt.template: unknown template 'alpaca'"),
])
def test_bad_choices_fail_at_start_up_before_the_model_loads(capsys, tiny_model_dir, tmp_path, monkeypatch, override,
                                                             message):
    import importlib.util

    from reasoner.training import grpo

    if "vllm" in override and importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    monkeypatch.setattr(grpo, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    rc, lines = _run(capsys, "train", f"model.path={tiny_model_dir}", f"out_dir={tmp_path}", override)
    assert rc == 2 and len(lines) == 1 and message in lines[0], lines


def test_a_tokenizer_without_a_chat_template_is_one_line(capsys, tiny_model_dir, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    rc, lines = _run(capsys, "train", f"model.path={plain}", f"out_dir={tmp_path / 'run'}")
    assert rc == 2 and len(lines) == 1 and "has no chat template; use 'r1' or 'raw'" in lines[0], lines


def test_dataset_errors_name_the_file_and_line(capsys, tiny_model_dir, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n')
    rc, lines = _run(capsys, "train", f"model.path={tiny_model_dir}", f"data.source={rows}",
                     f"out_dir={tmp_path / 'run'}")
    assert rc == 2 and len(lines) == 1 and f"{rows}, line 2: missing required field 'answer'" in lines[0]
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"problem": "caf\xe9", "answer": "1"}\n')
    rc, lines = _run(capsys, "eval", "--model", str(tiny_model_dir), f"benchmarks=[{latin}]",
                     f"out_dir={tmp_path / 'eval'}")
    assert rc == 2 and len(lines) == 1 and f"{latin}, line 1: not UTF-8 text" in lines[0]
    rc, lines = _run(capsys, "train", f"model.path={tiny_model_dir}", f"data.source={tmp_path / 'none.jsonl'}")
    assert rc == 2 and "is neither an existing file" in lines[0]


def test_an_eval_stopped_by_an_error_keeps_what_it_graded(capsys, tiny_model_dir, tmp_path, monkeypatch):
    from reasoner.evaluation import runner

    calls = {"n": 0}
    real = runner.evaluate_prompts

    def failing_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            from reasoner.rollout import EngineError
            raise EngineError("the engine died")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate_prompts", failing_second_chunk)
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_model_dir), "benchmarks=[{name: arithmetic, num_examples: 4}]",
            "sampling.n=1", "sampling.max_new_tokens=4", "chunk_problems=2", "progress=false", "plots=false",
            f"out_dir={out}"]
    rc, lines = _run(capsys, *args)
    assert rc == 2 and lines == ["reasoner eval: error: the engine died"]
    kept = [json.loads(line) for line in (out / "arithmetic" / "samples.jsonl").read_text().splitlines()]
    assert len(kept) == 2  # the first chunk's two problems
    monkeypatch.setattr(runner, "evaluate_prompts", real)
    rc, _ = _run(capsys, *args)
    assert rc == 0 and len((out / "arithmetic" / "samples.jsonl").read_text().splitlines()) == 4


def test_end_to_end_no_traceback_unless_debug(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "reasoner", "train", "model.path=/nonexistent"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "reasoner train: error: model /nonexistent: no such file or directory"
    debug = subprocess.run([sys.executable, "-m", "reasoner", "--debug", *cmd[3:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ModelLoadError" in debug.stderr
