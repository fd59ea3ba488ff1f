"""The generic registry, and that every family is reachable from the package by name."""
from __future__ import annotations

import pytest

import reasoner.algorithms as algorithms
from reasoner.algorithms import Registry, UnknownNameError


def test_register_get_names():
    reg: Registry = Registry("widget")

    @reg.register("b")
    def b():
        return "b"

    @reg.register("a")
    def a():
        return "a"

    assert reg.get("a") is a and reg.get("b")() == "b"
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2
    assert "a" in reg and "c" not in reg
    reg.register("a")(a)  # re-registering the same function is harmless (module reloads)


def test_unknown_name_lists_valid_names_and_is_key_and_value_error():
    reg: Registry = Registry("widget")
    reg.register("alpha")(lambda: None)
    reg.register("beta")(lambda: None)
    with pytest.raises(UnknownNameError) as info:
        reg.get("gamma")
    assert str(info.value) == "unknown widget 'gamma'; valid names: alpha, beta"
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(KeyError, match="valid names"):
        reg.get(["unhashable"])


def test_registering_a_different_function_under_a_taken_name_fails():
    reg: Registry = Registry("widget")
    reg.register("x")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("x")(lambda: 2)


def test_package_exports_every_family():
    assert set(algorithms.ADVANTAGE_ESTIMATORS.names()) == {"grpo", "dr_grpo", "rloo", "reinforce_pp_baseline", "gae",
                                                            "reinforce_pp"}
    assert set(algorithms.KL_ESTIMATORS.names()) == {"k1", "k2", "k3"}
    assert set(algorithms.LOSS_AGGREGATIONS.names()) == {
        "token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"
    }
    assert set(algorithms.POLICY_LOSSES.names()) == {"ppo_clip", "gspo", "gspo_token", "gmpo", "cispo", "sapo"}
    for name in algorithms.__all__:
        assert hasattr(algorithms, name), name
