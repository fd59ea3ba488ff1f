"""`reasoner dpo`: pair rows, the per-sequence scorer (padded = packed = by hand), reference modes, the step's
accumulation invariance, and a tiny-model run that learns the preference."""
from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms import PairLogps, preference_loss
from reasoner.config import ConfigError, load_config
from reasoner.data.datasets import DataConfig, DatasetError
from reasoner.data.tasks import arithmetic
from reasoner.dpo import DPOConfig, collate_pairs, dpo, load_preference_rows, tokenize_pairs
from reasoner.dpo.reference import TABLE_FILE, Reference
from reasoner.dpo.scorer import SequenceLogps
from reasoner.dpo.step import dpo_step
from reasoner.models import ModelConfig, load_model
from reasoner.training.backend import SingleProcess


def _pair_rows(n: int, seed: int = 0) -> list[dict]:
    """Verified vs wrong answers to arithmetic problems: the chosen is the worked solution, the rejected ends in
    an answer off by one."""
    rows = []
    for r in arithmetic(n, split="train", seed=seed):
        wrong = str(int(r["answer"]) + 1)
        rows.append({"id": r["id"], "problem": r["problem"], "chosen": r["response"],
                     "rejected": r["response"].replace(f"<answer>{r['answer']}</answer>", f"<answer>{wrong}</answer>")})
    return rows


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(ModelConfig(path=str(tiny_model_dir))).double()


def test_rows_plain_and_chat_and_errors(tmp_path, tokenizer):
    path = tmp_path / "pairs.jsonl"
    chat_prompt = [{"role": "user", "content": "What is 1 + 2?"}]
    lines = [{"problem": "What is 1 + 1?", "chosen": "<answer>2</answer>", "rejected": "<answer>3</answer>"},
             {"problem": chat_prompt, "chosen": [{"role": "assistant", "content": "<answer>3</answer>"}],
              "rejected": [{"role": "assistant", "content": "<answer>4</answer>"}]}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows = load_preference_rows(DataConfig(source=str(path)))
    assert rows[0]["chosen"] == "<answer>2</answer>" and rows[1]["prompt_messages"] == chat_prompt
    pairs = tokenize_pairs(tokenizer, rows)
    for p, (good, bad) in zip(pairs, (("2", "3"), ("3", "4"))):
        for side, digit in ((p.chosen, good), (p.rejected, bad)):
            target = tokenizer.decode([t for t, m in zip(side.input_ids, side.loss_mask) if m])
            assert f"<answer>{digit}</answer>" in target and "What is" not in target
    # both sides of a pair start from the same prompt tokens
    first = pairs[0]
    n = first.chosen.loss_mask.index(1)
    assert first.chosen.input_ids[:n] == first.rejected.input_ids[:n]
    path.write_text(json.dumps({"problem": "x", "chosen": "y"}) + "\n")
    with pytest.raises(DatasetError, match="'rejected'.*fields present: chosen, problem"):
        load_preference_rows(DataConfig(source=str(path)))
    path.write_text(json.dumps({"problem": "x", "chosen": "y", "rejected": 3}) + "\n")
    with pytest.raises(DatasetError, match="field 'rejected' must be text or a list of chat messages"):
        load_preference_rows(DataConfig(source=str(path)))


def _by_hand(model, pairs) -> torch.Tensor:
    """Summed answer log-probs of each sequence, one sequence at a time from the model's logits."""
    out = []
    for e in [p.chosen for p in pairs] + [p.rejected for p in pairs]:
        ids = torch.tensor([e.input_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        tok = logp.gather(-1, ids[0, 1:, None])[:, 0]
        out.append((tok * torch.tensor(e.loss_mask[1:], dtype=torch.float64)).sum())
    return torch.stack(out)


@pytest.mark.parametrize("fused", [False, True])
def test_scorer_padded_and_packed_equal_by_hand(model, tokenizer, fused):
    pairs = tokenize_pairs(tokenizer, _pair_rows(5))
    scorer = SequenceLogps(model, fused_head=fused)
    expected = _by_hand(model, pairs)
    with torch.no_grad():
        padded = collate_pairs(pairs, tokenizer.pad_token_id)
        packed = collate_pairs(pairs, tokenizer.pad_token_id, packed=True, max_length=256)
        assert packed.tensors["input_ids"].shape[0] < padded.tensors["input_ids"].shape[0]  # rows were shared
        for batch in (padded, packed):
            assert_close(scorer(batch.tensors, batch.num_sequences), expected, atol=1e-6, rtol=0)
            assert batch.tokens.tolist() == [sum(e.loss_mask[1:]) for e in
                                             [p.chosen for p in pairs] + [p.rejected for p in pairs]]


def _cfg(tmp_path, tiny_model_dir, **over) -> DPOConfig:
    overrides = [f"model.path={tiny_model_dir}", f"out_dir={tmp_path}", "progress=false",
                 *(f"{k}={v}" for k, v in over.items())]
    return load_config(DPOConfig, None, overrides)


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_step_is_invariant_to_micro_batching_and_equals_the_formula(model, tokenizer, tmp_path, tiny_model_dir):
    pairs = tokenize_pairs(tokenizer, _pair_rows(6))
    with torch.no_grad():
        lp = _by_hand(model, pairs)
    ref = Reference(table=torch.stack([lp[:6] - 0.3, lp[6:] + 0.2], 1))
    grads, metrics = [], []
    for micro, packed in ((0, False), (2, False), (4, True)):
        cfg = _cfg(tmp_path, tiny_model_dir, **{"optim.micro_batch_size": micro, "packing": packed,
                                                "loss.sft_weight": 0.5, "batch_size": 6})
        model.zero_grad()
        backend = SingleProcess.wrapping(SequenceLogps(model), None, None)
        metrics.append(dpo_step(backend, pairs, ref, cfg, tokenizer.pad_token_id))
        grads.append(_grads(model))
    for g, m in zip(grads[1:], metrics[1:]):
        assert_close(g, grads[0], atol=1e-9, rtol=1e-6)
        assert m == pytest.approx(metrics[0], abs=1e-9)
    # the formula on the by-hand log-probs: loss and gradient
    model.zero_grad()
    lp = _by_hand(model, pairs)
    tokens = torch.tensor([sum(e.loss_mask[1:]) for e in [p.chosen for p in pairs] + [p.rejected for p in pairs]])
    loss, _ = preference_loss("sigmoid", PairLogps(lp[:6], lp[6:], ref.table[:, 0], ref.table[:, 1], tokens[:6],
                                                   tokens[6:]), num_pairs=6, options={"beta": 0.1},
                              sft_weight=0.5, num_chosen_tokens=float(tokens[:6].sum()))
    loss.backward()
    assert metrics[0]["loss"] == pytest.approx(float(loss.detach()), abs=1e-9)
    assert_close(_grads(model), grads[0], atol=1e-9, rtol=1e-6)
    assert set(metrics[0]) >= {"rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy",
                               "logps/chosen", "logps/rejected"}


def test_config_errors(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="loss.dpop_lambda is set but loss 'ipo' does not take it"):
        _cfg(tmp_path, tiny_model_dir, **{"loss.name": "ipo", "loss.dpop_lambda": 5})
    with pytest.raises(ConfigError, match="unknown preference loss 'kto'; valid: ipo, sigmoid"):
        _cfg(tmp_path, tiny_model_dir, **{"loss.name": "kto"})
    with pytest.raises(ConfigError, match="'reference' must be one of precompute, frozen"):
        _cfg(tmp_path, tiny_model_dir, reference="none")


def _write_pairs(path, n):
    path.write_text("".join(json.dumps(r) + "\n" for r in _pair_rows(n)))
    return path


def test_run_learns_the_preference_and_stores_the_reference(tmp_path, tiny_model_dir):
    data = _write_pairs(tmp_path / "pairs.jsonl", 16)
    cfg = _cfg(tmp_path / "run", tiny_model_dir, **{"data.source": data, "batch_size": 8, "max_steps": 12,
                                                     "optim.lr": 3e-3, "optim.warmup_steps": 0, "loss.beta": 0.5,
                                                     "packing": True, "max_length": 256})
    result = dpo(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 12
    assert records[0]["rewards/margin"] == pytest.approx(0.0, abs=1e-6)   # policy == reference at step 1
    assert records[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert records[-1]["rewards/margin"] > 0.5 and records[-1]["rewards/accuracy"] == 1.0
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    trained = load_model(ModelConfig(path=str(result.final_model)))
    base = load_model(ModelConfig(path=str(tiny_model_dir)))
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))
    stored = torch.load(tmp_path / "run" / TABLE_FILE, weights_only=True)
    assert stored["logps"].shape == (16, 2)
    # the frozen-copy reference scores the same numbers: the first step's metrics agree
    frozen = _cfg(tmp_path / "frozen", tiny_model_dir, **{"data.source": data, "batch_size": 8, "max_steps": 1,
                                                          "reference": "frozen", "optim.lr": 3e-3,
                                                          "optim.warmup_steps": 0, "loss.beta": 0.5})
    dpo(frozen)
    first = json.loads((tmp_path / "frozen" / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("loss", "logps/chosen", "logps/rejected", "rewards/margin"):
        assert first[key] == pytest.approx(records[0][key], abs=1e-4)


def test_lora_run_saves_a_merged_model(tmp_path, tiny_model_dir):
    pytest.importorskip("peft")
    data = _write_pairs(tmp_path / "pairs.jsonl", 8)
    cfg = _cfg(tmp_path / "run", tiny_model_dir, **{"data.source": data, "batch_size": 4, "max_steps": 3,
                                                     "lora.enabled": True, "lora.r": 4, "optim.lr": 1e-2,
                                                     "optim.warmup_steps": 0})
    result = dpo(cfg)
    assert (tmp_path / "run" / "adapter").is_dir()
    merged = load_model(ModelConfig(path=str(result.final_model)))
    base = load_model(ModelConfig(path=str(tiny_model_dir)))
    assert any(not torch.equal(a, b) for a, b in zip(merged.parameters(), base.parameters()))


def test_online_rounds_pair_within_prompts_and_learn(tmp_path, tiny_model_dir, dense_reward):
    from reasoner.metrics.logger import read_metrics
    cfg = _cfg(tmp_path / "on", tiny_model_dir, **{
        "online.enabled": True, "online.rounds": 3, "online.prompts_per_round": 4, "online.updates_per_round": 2,
        "sampling.n": 4, "sampling.max_new_tokens": 12, "data.num_examples": 16, "optim.lr": 3e-3,
        "optim.warmup_steps": 0, "loss.beta": 0.5, "verifiers": "{digit_fraction: {weight: 1.0}}",
        "online.drop_truncated": False})   # the untrained test model rarely stops by itself
    result = dpo(cfg)
    records = read_metrics(tmp_path / "on" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3] and records[-1]["answers_sampled"] == 48
    assert all(0 <= r["pairs"] <= 4 for r in records)          # at most one pair per prompt (best vs worst)
    trained = [r for r in records if r["pairs"]]
    assert len(trained) == 3 and {"pass@1", "reward/mean", "length/mean"} <= set(records[0])
    assert {"rewards/margin", "logps/chosen", "grad_norm"} <= set(trained[0])
    # logged: the round's last update, which sees the margin the round's first update opened on the same pairs
    assert records[0]["rewards/margin"] > 0 and records[0]["loss"] < 0.6931
    assert result.steps == 6 and result.final_model.is_dir()


def test_online_pairs_are_the_sampled_tokens(tokenizer):
    from reasoner.dpo.online import round_pairs
    from reasoner.rollout.base import Completion
    from reasoner.training.batch import Rollouts
    groups = [[Completion([5, 6, 7], [0.0] * 3, "stop"), Completion([8], [0.0], "stop"),
               Completion([9, 9], [0.0] * 2, "length")],
              [Completion([4], [0.0], "stop"), Completion([4, 4], [0.0] * 2, "stop"),
               Completion([3], [0.0], "stop")]]
    rollouts = Rollouts.from_groups([[1, 2], [1, 3]], groups, [{"id": "a"}, {"id": "b"}], tokenizer)
    cfg = DPOConfig()
    # prompt a: rewards 1, 0, (truncated, left out) -> (0 vs 1); prompt b: all equal -> no pair
    pairs = round_pairs(rollouts, [1.0, 0.0, 5.0, 1.0, 1.0, 1.0], cfg, torch.Generator().manual_seed(0))
    assert len(pairs) == 1
    p = pairs[0]
    assert p.chosen.input_ids == [1, 2, 5, 6, 7] and p.chosen.loss_mask == [0, 0, 1, 1, 1]
    assert p.rejected.input_ids == [1, 2, 8] and p.rejected.loss_mask == [0, 0, 1]
