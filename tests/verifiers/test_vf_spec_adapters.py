"""RewardSpec composition, and the TRL / verl adapters around the same verifiers."""
import json

import pytest

from reasoner_verifiers import RewardSpec, Score, adapters
from reasoner_verifiers.spec import RewardBatch

R1_OK = "<think>2+2 is 4</think><answer>4</answer>"
R1_WRONG = "<think>2+2 is 5</think><answer>5</answer>"
BARE = "4"


@pytest.fixture(scope="module")
def spec():
    s = RewardSpec.from_config({"math": {"weight": 1.0, "mode": "strict"}, "format": {"weight": 0.1}})
    yield s
    s.close()


def test_totals_means_counts(spec):
    batch = spec.score_batch([R1_OK, R1_WRONG, BARE], [{"answer": "4"}] * 3)
    assert batch.totals == pytest.approx([1.1, 0.1, 0.0])
    assert batch.correct == [True, False, False]
    assert [s.status for s in batch.scores["math"]] == ["correct", "wrong", "no_answer"]
    assert batch.means() == pytest.approx({"math": 1 / 3, "format": 2 / 3, "total": 1.2 / 3})
    assert batch.status_counts() == {"math": {"correct": 1, "wrong": 1, "no_answer": 1}, "format": {"correct": 2, "wrong": 1}}
    assert len(batch) == 3


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="unknown verifier 'mth'; valid names"):
        RewardSpec.from_config({"mth": {}})
    with pytest.raises(ValueError, match="format: unknown option\\(s\\) 'mode'"):
        RewardSpec.from_config({"math": {}, "format": {"mode": "strict"}})
    with pytest.raises(ValueError, match="weight must be a number"):
        RewardSpec.from_config({"math": {"weight": "high"}})
    with pytest.raises(ValueError, match="names no verifier"):
        RewardSpec.from_config({})
    with pytest.raises(ValueError, match="primary 'code' is not one of"):
        RewardSpec.from_config({"math": {}}, primary="code")


def test_labels_and_primary():
    spec = RewardSpec.from_config({
        "fmt": {"verifier": "format_partial", "weight": 0.5},
        "acc_lenient": {"verifier": "math", "mode": "lenient", "weight": 0.0},
        "acc": {"verifier": "math", "weight": 1.0},
    })
    try:
        assert spec.primary == "acc_lenient"  # the first math entry
        batch = spec.score_batch(["<answer>50\\%</answer>"], [{"answer": "50"}])
        assert batch.scores["acc_lenient"][0].correct and not batch.scores["acc"][0].correct
        assert batch.correct == [True]
    finally:
        spec.close()
    no_primary = RewardSpec.from_config({"format": {}})
    assert no_primary.primary is None
    assert no_primary.score_batch(["x"], [{}]).correct == [False]


def test_reward_batch_checks_lengths():
    with pytest.raises(ValueError, match="different numbers"):
        RewardBatch({"a": [Score(1.0, "correct")], "b": []}, {"a": 1.0, "b": 1.0})


def test_spec_context_manager_closes_pools():
    with RewardSpec.from_config({"math": {}}) as spec:
        spec.score_batch(["<answer>\\sqrt{4}</answer>"], [{"answer": "2"}])
        pool = spec.verifiers["math"]._pool
        assert pool is not None and pool.pids()
    assert spec.verifiers["math"]._pool is None


# ---------------------------------------------------------------------------------------------- TRL
def test_trl_reward_funcs(spec):
    funcs, weights = adapters.trl_reward_funcs(spec)
    assert [f.__name__ for f in funcs] == ["math", "format"] and weights == [1.0, 0.1]
    logged = {}
    conversational = [[{"role": "assistant", "content": R1_OK}], [{"role": "assistant", "content": BARE}]]
    kwargs = dict(prompts=["p", "p"], completion_ids=[[1], [2]], answer=["4", "4"], trainer_state=object(),
                  log_extra=lambda *a: None, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert funcs[0](completions=conversational, **kwargs) == [1.0, 0.0]
    assert funcs[1](completions=[R1_OK, BARE], **kwargs) == [1.0, 0.0]
    assert logged == {"verifiers/math/no_answer_frac": 0.5, "verifiers/format/wrong_frac": 0.5}


def test_trl_reward_func_by_name_with_other_gold_column():
    f = adapters.trl_reward_func("math", gold_key="solution", extract="boxed")
    try:
        assert f(["\\boxed{1/2}", "\\boxed{2}"], solution=["\\frac12", "3"]) == [1.0, 0.0]
        assert f.__name__ == "math"
    finally:
        f.verifier.close()


def test_trl_accepts_only_known_completion_shapes():
    with pytest.raises(TypeError):
        adapters.completion_text(42)


# ---------------------------------------------------------------------------------------------- verl
def test_verl_compute_score(spec):
    compute_score = adapters.make_verl_compute_score(spec)
    out = compute_score("openai/gsm8k", R1_OK, "4", {"split": "train"})
    assert out == {"score": pytest.approx(1.1), "acc": 1.0, "math": 1.0, "format": 1.0}
    out = compute_score(data_source="x", solution_str=R1_WRONG, ground_truth={"answer": "4"}, extra_info=None)
    assert out["score"] == pytest.approx(0.1) and out["acc"] == 0.0


def test_verl_module_level_functions_read_the_env_spec(monkeypatch, tmp_path):
    config = tmp_path / "spec.json"
    config.write_text(json.dumps({"math": {"extract": "boxed"}, "format_partial": {"weight": 0.5}}))
    monkeypatch.setenv("VERIFIERS_REWARD_SPEC", str(config))
    monkeypatch.setattr(adapters, "_default_spec", None)
    try:
        out = adapters.compute_score("math", "so \\boxed{4}", "4")
        assert out["acc"] == 1.0 and out["score"] == pytest.approx(1.0 + 0.5 * 0 / 7)
        rows = adapters.compute_score_batch(["m", "m"], ["\\boxed{3}", "\\boxed{4}"], ["4", "4"])
        assert [r["acc"] for r in rows] == [0.0, 1.0]
    finally:
        if adapters._default_spec is not None:
            adapters._default_spec.close()
        monkeypatch.setattr(adapters, "_default_spec", None)
    monkeypatch.setenv("VERIFIERS_REWARD_SPEC", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        adapters.compute_score("m", "x", "1")
    monkeypatch.setattr(adapters, "_default_spec", None)


def test_verl_loads_the_entry_file_by_path(monkeypatch):
    """verl imports `custom_reward_function.path` with spec_from_file_location, outside any package."""
    import importlib.util
    from pathlib import Path

    path = Path(adapters.__file__).with_name("verl_reward.py")
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("VERIFIERS_REWARD_SPEC", '{"math": {"extract": "boxed"}}')
    monkeypatch.setattr(adapters, "_default_spec", None)
    try:
        assert module.compute_score("x", "\\boxed{7}", "7", None)["acc"] == 1.0
    finally:
        if adapters._default_spec is not None:
            adapters._default_spec.close()
        monkeypatch.setattr(adapters, "_default_spec", None)
