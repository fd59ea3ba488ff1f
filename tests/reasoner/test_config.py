"""The typed config loader: YAML + key=value overrides, unknown keys rejected, types coerced, saved config."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from reasoner.config import ConfigError, load_config, parse_overrides, save_config
from reasoner.training import TrainConfig


def test_defaults_yaml_and_overrides_compose(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 7\nsampling:\n  n: 4\noptim:\n  lr: 1e-5\n")
    cfg = load_config(TrainConfig, path, ["sampling.temperature=0.6", "algorithm.clip_high=0.28",
                                          "reward.verifiers={math: {weight: 1.0}}"])
    assert cfg.steps == 7 and cfg.sampling.n == 4
    assert cfg.optim.lr == pytest.approx(1e-5)  # YAML reads "1e-5" as a string; the float field coerces it
    assert cfg.sampling.temperature == 0.6 and cfg.algorithm.clip_high == 0.28
    assert cfg.reward.verifiers == {"math": {"weight": 1.0}}
    assert cfg.sampling.max_new_tokens == TrainConfig().sampling.max_new_tokens  # untouched default


def test_unknown_key_names_the_dotted_key_and_lists_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'sampling.nn'.*max_new_tokens, n, protocol"):
        load_config(TrainConfig, None, ["sampling.nn=4"])
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'optim.learning_rate'"):
        load_config(TrainConfig, path)


@pytest.mark.parametrize("override, message", [
    ("steps=many", "'steps' must be an integer"),
    ("sampling.temperature=hot", "'sampling.temperature' must be a number"),
    ("log.progress=maybe", "'log.progress' must be true or false"),
    ("steps", "not of the form key=value"),
    ("sampling=3", "'sampling' must be a mapping"),
    ("engine=tpu", "engine.name: unknown engine 'tpu'; valid engines: hf, vllm"),
    ("prompt.template=alpaca", "prompt.template: unknown template 'alpaca'; valid templates: chat, r1, raw"),
    ("distributed.backend=fsdp", "valid backends: auto, single, ddp, deepspeed"),
    ("steps=-3", "'steps' must be >= 1, got -3"),
    ("prompts_per_step=0", "'prompts_per_step' must be >= 1, got 0"),
    ("data.limit=-1", "data.limit must be >= 1"),
    ("sampling.n=0", "sampling: n must be >= 1"),
])
def test_bad_values_give_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, [override])


@pytest.mark.parametrize("override, old, new", [
    ("rollout.group_size=4", "rollout.group_size", "sampling.n"),
    ("rollout.engine=vllm", "rollout.engine", "engine.name"),
    ("rollout.max_new_tokens=64", "rollout.max_new_tokens", "sampling.max_new_tokens"),
    ("rollout.vllm.seed=1", "rollout.vllm", "engine.vllm"),
    ("data.template=r1", "data.template", "prompt.template"),
    ("data.max_prompt_tokens=64", "data.max_prompt_tokens", "prompt.max_prompt_tokens"),
])
def test_old_key_names_are_one_error_naming_the_new_one(override, old, new):
    with pytest.raises(ConfigError, match=f"config key '{old}' was renamed: use '{new}'"):
        load_config(TrainConfig, None, [override])


def test_renames_are_reported_inside_nested_sections_and_files(tmp_path):
    from reasoner.evaluation import EvalConfig
    from reasoner.pipeline import PipelineConfig

    with pytest.raises(ConfigError, match="'grpo.rollout.group_size' was renamed: use 'grpo.sampling.n'"):
        load_config(PipelineConfig, None, ["grpo.rollout.group_size=4"])
    with pytest.raises(ConfigError, match="'out' was renamed: use 'out_dir'"):
        load_config(PipelineConfig, None, ["out=runs/x"])
    path = tmp_path / "old.yaml"
    path.write_text("vllm: {seed: 1}\n")
    with pytest.raises(ConfigError, match="old.yaml: config key 'vllm' was renamed: use 'engine.vllm'"):
        load_config(EvalConfig, path)


def test_a_shorthand_section_takes_its_main_value():
    assert load_config(TrainConfig, None, ["engine=vllm"]).engine.name == "vllm"
    cfg = load_config(TrainConfig, None, ["engine=hf", "optim.lr=2e-6"])
    assert cfg.engine.name == "hf" and cfg.engine.max_batch_size == 256 and cfg.optim.lr == 2e-6


def test_dotted_overrides_edit_mappings_in_place_and_null_removes_an_entry():
    default = TrainConfig().reward.verifiers
    assert set(default) == {"math", "format"}
    cfg = load_config(TrainConfig, None, ["reward.verifiers.format.weight=0.5"])
    assert cfg.reward.verifiers == {"math": default["math"], "format": {"weight": 0.5}}
    assert load_config(TrainConfig, None, ["reward.verifiers.format=null"]).reward.verifiers == {"math": default["math"]}
    assert load_config(TrainConfig, "grpo_gsm8k", ["reward.verifiers.format=null"]).reward.verifiers == \
        {"math": {"weight": 1.0, "mode": "strict", "gold_format": "gsm8k"}}


def test_repeated_keys_and_bad_bytes_in_a_config_file_are_one_error(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("steps: 3\noptim:\n  lr: 1.0e-5\nsteps: 4\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: line 4: key 'steps' appears twice in one mapping \(first on line 1\)"):
        load_config(TrainConfig, dup)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"steps: 3\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="latin.yaml, line 2: not UTF-8 text"):
        load_config(TrainConfig, latin)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(TrainConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_config(TrainConfig, bad)


def test_saved_config_reloads_to_the_same_values(tmp_path):
    cfg = load_config(TrainConfig, None, ["steps=3", "algorithm.dual_clip=3.0", "optim.betas=[0.9, 0.95]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["algorithm"]["dual_clip"] == 3.0
    assert load_config(TrainConfig, tmp_path / "config.yaml") == cfg


def test_parse_overrides_nests_dotted_keys():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}


def test_shipped_configs_load_and_merge_in_order():
    from reasoner.config import CONFIG_DIR

    train_configs = [p for p in CONFIG_DIR.glob("*.yaml") if p.stem in ("grpo_gsm8k", "r1_zero_math", "dr_grpo")]
    assert len(train_configs) == 3
    for path in train_configs:
        load_config(TrainConfig, path)  # every key valid
    cfg = load_config(TrainConfig, ["grpo_gsm8k", "dr_grpo"], ["steps=3"])
    assert cfg.algorithm.advantage == "dr_grpo" and cfg.algorithm.clip_high == 0.28 and cfg.steps == 3
    with pytest.raises(ConfigError, match="shipped configs: .*grpo_gsm8k"):
        load_config(TrainConfig, "no_such_config")



@dataclass
class _Inner:
    lr: float = 1.0
    warmup: int = 0


@dataclass
class _Middle:
    inner: _Inner = field(default_factory=lambda: _Inner(lr=2.0, warmup=5))
    name: str = "m"


@dataclass
class _Outer:
    middle: _Middle = field(default_factory=lambda: _Middle(inner=_Inner(lr=3.0, warmup=7), name="custom"))


def test_overriding_one_key_keeps_the_sections_non_class_defaults(tmp_path):
    cfg = load_config(_Outer, overrides=["middle.inner.lr=0.5"])
    assert cfg.middle.inner == _Inner(lr=0.5, warmup=7) and cfg.middle.name == "custom"
    path = tmp_path / "c.yaml"
    path.write_text("middle:\n  name: other\n")
    cfg = load_config(_Outer, path)
    assert cfg.middle.inner == _Inner(lr=3.0, warmup=7) and cfg.middle.name == "other"
    with pytest.raises(ConfigError, match="unknown config key 'middle.inner.lrr'"):
        load_config(_Outer, overrides=["middle.inner.lrr=1"])


@pytest.mark.parametrize("stage, cls_path", [("train", "reasoner.training:TrainConfig"),
                                              ("eval", "reasoner.evaluation:EvalConfig"),
                                              ("demo", "reasoner.pipeline:PipelineConfig")])
def test_print_config_shows_every_key_and_reloads_to_the_same_config(capsys, tmp_path, stage, cls_path):
    import importlib

    from reasoner import cli
    from reasoner.config import to_dict

    module, name = cls_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    assert cli.main([stage, "--print-config", "seed=3"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(printed)
    expected = load_config(cls, ["demo"] if stage == "demo" else None, ["seed=3"])
    assert load_config(cls, tmp_path / "printed.yaml") == expected
    assert set(yaml.safe_load(printed)) == set(to_dict(expected))  # every top-level key, defaults included
