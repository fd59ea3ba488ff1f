"""Scale-out building blocks that need neither vLLM nor several processes (they run in the main suite):
row padding and sharding, DeepSpeed config resolution, backend selection, the probe comparison, call timeouts."""
from __future__ import annotations

import math
import time

import pytest
import torch
from conftest import chi_square, first_token_draws, next_token_probs

from reasoner.config import ConfigError, load_config
from reasoner.data import build_prompts
from reasoner.data.tasks import arithmetic
from reasoner.models import ModelConfig, load_model, load_tokenizer
from reasoner.rollout import Completion, SamplingParams
from reasoner.rollout.hf_engine import HFEngine
from reasoner.training import AlgorithmConfig, TrainConfig
from reasoner.training.backend import DistributedConfig, SingleProcess
from reasoner.training.backend_factory import make_backend
from reasoner.training.batch import Rollouts, collate, pad_rows
from reasoner.training.config import OptimConfig, SyncCheckConfig
from reasoner.training.deepspeed_backend import load_deepspeed_config, resolve_deepspeed_config, shipped_configs
from reasoner.training.logprobs import score_logprobs
from reasoner.training.sharding import RankRows, shard_prompts
from reasoner.training.sync_check import ProbeResult, SyncProbe, Thresholds, compare
from reasoner.training.update import update_policy


@pytest.fixture(scope="module")
def model_and_batch(scaleout_model_dir):
    tok = load_tokenizer(str(scaleout_model_dir))
    model = load_model(ModelConfig(path=str(scaleout_model_dir)))
    prompts = build_prompts(tok, arithmetic(3, split="train"))
    torch.manual_seed(0)
    groups = HFEngine(model, tok).generate([p.token_ids for p in prompts], SamplingParams(n=2, max_new_tokens=6))
    rollouts = Rollouts.from_groups([p.token_ids for p in prompts], groups, [p.example for p in prompts], tok)
    batch = collate(rollouts, torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0]), tok.pad_token_id)
    return tok, model, rollouts, batch


class FakeRank(SingleProcess):
    """A rank of a pretend multi-process run: only rank / world size matter for the functions under test."""

    def __init__(self, rank: int, world_size: int):
        super().__init__()
        self.rank, self.world_size = rank, world_size


def test_pad_rows_adds_rows_without_loss_and_leaves_the_update_unchanged(model_and_batch, scaleout_model_dir):
    _, _, _, batch = model_and_batch
    padded = pad_rows(batch, batch.size + 3)
    assert padded.size == batch.size + 3 and padded.group_size == 1  # 3 rows are not whole groups of 2
    assert pad_rows(batch, batch.size + 4).group_size == 2
    assert padded.row_padding.tolist() == [False] * batch.size + [True] * 3
    assert float(padded.response_mask[batch.size:].sum()) == 0.0 and float(padded.advantages[batch.size:].abs().sum()) == 0

    def updated(b) -> list[torch.Tensor]:
        model = load_model(ModelConfig(path=str(scaleout_model_dir)))
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # not Adam: its update hides a mis-scaled loss
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        for agg in ("token-mean", "seq-mean-token-mean"):
            update_policy(SingleProcess.wrapping(model, optimizer, scheduler), b, AlgorithmConfig(loss_agg=agg),
                          OptimConfig(micro_batch_size=4, max_grad_norm=None),  # clipping would hide scale too
                          temperature=1.0, norm_length=6, generator=torch.Generator().manual_seed(0))
        return [p.detach().clone() for p in model.parameters()]

    # Padding rows are not counted in the sequence-mean denominator either, so the two updates are the same.
    initial = [p.detach().clone() for p in load_model(ModelConfig(path=str(scaleout_model_dir))).parameters()]
    plain = updated(batch)
    assert max(float((a - i).abs().max()) for a, i in zip(plain, initial)) > 1e-3
    for grown in (updated(padded), updated(pad_rows(batch, batch.size + 4))):
        for a, b in zip(plain, grown):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_shard_prompts_gives_each_rank_a_contiguous_slice_and_rejects_uneven_splits():
    assert [shard_prompts(list(range(8)), FakeRank(r, 2)) for r in (0, 1)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="divisible"):
        shard_prompts(list(range(6)), FakeRank(0, 4))


def test_rank_rows_keep_own_rows_and_pad_to_the_largest_shard(model_and_batch):
    _, _, _, batch = model_and_batch  # 3 groups of 2 rows: as if each of 2 ranks held 6 of 12 global rows
    assert batch.group_size == 2
    rank0, rank1 = RankRows.of(6, FakeRank(0, 2)), RankRows.of(6, FakeRank(1, 2))
    assert (rank0.start, rank1.start, rank1.total) == (0, 6, 12)
    assert rank1.local(torch.arange(12)).tolist() == [6, 7, 8, 9, 10, 11]
    keep = torch.tensor([0, 1, 6, 7, 8, 9, 10, 11])  # rank 0 keeps 1 group, rank 1 all 3
    r0, r1 = rank0.for_update(batch, keep), rank1.for_update(batch, keep)
    assert r0.size == r1.size == 6 and r0.group_size == r1.group_size == 2  # padded with whole groups
    assert r0.row_padding.tolist() == [False] * 2 + [True] * 4 and not r1.row_padding.any()
    assert torch.equal(r0.advantages[:2], batch.advantages[:2]) and float(r0.advantages[2:].abs().sum()) == 0
    none_kept = rank0.for_update(batch, torch.tensor([6, 7]))
    assert none_kept.size == 2 and none_kept.row_padding.all() and float(none_kept.response_mask.sum()) == 0
    assert none_kept.group_size == 2
    assert rank0.for_update(batch, torch.tensor([], dtype=torch.long)) is None


def test_deepspeed_configs_fill_auto_values_and_reject_conflicting_ones():
    assert {"zero2", "zero3", "zero3_offload"} <= set(shipped_configs())
    raw, where = load_deepspeed_config("zero3")
    cfg = resolve_deepspeed_config(raw, where, world_size=4, max_grad_norm=1.0, dtype=torch.bfloat16)
    assert cfg["train_micro_batch_size_per_gpu"] == 1 and cfg["gradient_accumulation_steps"] == 1
    assert cfg["train_batch_size"] == 4 and cfg["gradient_clipping"] == 1.0 and cfg["bf16"]["enabled"] is True
    assert raw["gradient_accumulation_steps"] == "auto"  # the shipped dict is not modified
    fp32 = resolve_deepspeed_config(raw, where, world_size=2, max_grad_norm=None, dtype=torch.float32)
    assert fp32["bf16"]["enabled"] is False and fp32["gradient_clipping"] == 0.0
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        resolve_deepspeed_config({**raw, "gradient_accumulation_steps": 4}, "my.json", world_size=2,
                                 max_grad_norm=1.0, dtype=torch.float32)
    with pytest.raises(ValueError, match="stage must be 2 or 3"):
        resolve_deepspeed_config({**raw, "zero_optimization": {"stage": 1}}, "my.json", world_size=2,
                                 max_grad_norm=1.0, dtype=torch.float32)
    with pytest.raises(ValueError, match="zero2, zero3"):
        load_deepspeed_config("zero9")


def test_backend_selection(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert isinstance(make_backend(DistributedConfig()), SingleProcess)
    with pytest.raises(ValueError, match="valid backends: auto, single, ddp, deepspeed"):
        make_backend(DistributedConfig(backend="fsdp"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="launcher started 2 processes"):
        make_backend(DistributedConfig(backend="single"))


def test_train_config_rejects_uneven_prompt_split_and_bad_sync_check():
    with pytest.raises(ConfigError, match="sync_check"):
        load_config(TrainConfig, None, ["sync_check.every=0"])
    with pytest.raises(ConfigError, match="unknown config key 'distributed.stage'"):
        load_config(TrainConfig, None, ["distributed.stage=3"])


def test_probe_comparison_matches_hand_computed_gap_and_kl(model_and_batch):
    tok, model, rollouts, batch = model_and_batch
    exact = score_logprobs(model, batch)
    completions = []
    for i, c in enumerate(rollouts.completions):
        n = len(c.token_ids)
        completions.append(Completion(c.token_ids, (exact[i, :n] + 0.1).tolist(), c.finish_reason))
    result = compare(model, rollouts.prompt_ids, completions, temperature=1.0, pad_id=tok.pad_token_id)
    # engine log-probs 0.1 above the trainer's on every token: r = -0.1, k3 = exp(-0.1) - 1 + 0.1
    assert result.mean_gap == pytest.approx(0.1, abs=1e-5) and result.max_gap == pytest.approx(0.1, abs=1e-5)
    assert result.kl == pytest.approx(math.exp(-0.1) - 1 + 0.1, rel=1e-4)
    assert result.tokens == int(batch.response_mask.sum())
    limits = Thresholds.resolve(SyncCheckConfig(), torch.float32)
    assert len(result.failures(limits)) == 2 and not ProbeResult(1e-6, 1e-5, 0.0, 10).failures(limits)
    assert ProbeResult(float("nan"), 0.0, 0.0, 10).failures(limits)  # NaN never passes
    assert Thresholds.resolve(SyncCheckConfig(), torch.bfloat16).mean_gap > limits.mean_gap


def test_probe_batch_has_a_long_prompt_spanning_several_cache_blocks():
    pool = [[1, 2, 3, 4, 5]] * 3 + [[6, 7]]
    probe = SyncProbe.from_prompts(SyncCheckConfig(num_prompts=2, long_prompt_tokens=300), pool, temperature=1.0,
                                   pad_id=0)
    assert len(probe.prompts) == 3 and probe.prompts[:2] == pool[:2] and len(probe.prompts[2]) == 300


def test_call_with_timeout_turns_a_hang_into_an_error():
    pytest.importorskip("torch")
    from reasoner.rollout.vllm_engine import EngineError, call_with_timeout

    marked = []
    t0 = time.perf_counter()
    with pytest.raises(EngineError, match="did not return within 0.2 s"):
        call_with_timeout("vLLM generate", time.sleep, 0.2, 30, on_timeout=marked.append)
    assert time.perf_counter() - t0 < 5 and marked
    with pytest.raises(EngineError, match="ZeroDivisionError"):
        call_with_timeout("vLLM load_weights", lambda: 1 / 0, 5)
    assert call_with_timeout("ok", lambda x: x + 1, 5, 1) == 2


def test_vllm_options_are_validated_without_vllm():
    from reasoner.config import load_config
    from reasoner.training import TrainConfig

    def opts(**values):
        return load_config(TrainConfig, None, [f"engine.vllm.{k}={v}" for k, v in values.items()]).engine.vllm

    assert opts(gpu_memory_utilization=0.5).gpu_memory_utilization == 0.5
    with pytest.raises(ConfigError, match="unknown config key 'engine.vllm.gpu_memory'"):
        opts(gpu_memory=0.5)
    with pytest.raises(ConfigError, match="server mode needs server_url"):
        opts(mode="server")
    with pytest.raises(ConfigError, match="sleep_level"):
        opts(sleep_level=3)
    assert opts(mode="server", server_url="http://a:1, http://b:2").server_urls == ["http://a:1", "http://b:2"]



def test_hf_engine_samples_from_the_untruncated_distribution(model_and_batch):
    """4000 first tokens against softmax(logits) (before the fix in hf_engine.py, transformers' default top-k 50
    gave a statistic of ~14500 on ~290 degrees of freedom)."""
    tok, model, rollouts, _ = model_and_batch
    prompt = rollouts.prompt_ids[0]
    torch.manual_seed(0)
    n = 4000
    stat, df = chi_square(first_token_draws(HFEngine(model, tok, max_batch_size=n), prompt, n),
                          next_token_probs(model, prompt), n)
    assert stat < df + 6 * math.sqrt(2 * df), (stat, df)


def test_balanced_assignment_gives_equal_slots_and_near_equal_tokens():
    from reasoner.training.sharding import balanced_assignment

    tokens = [4096, 64, 3000, 200, 150, 2500, 90, 1000]
    plan = balanced_assignment(tokens, 2)
    assert sorted(g for rank in plan for g in rank) == list(range(8)) and [len(r) for r in plan] == [4, 4]
    loads = [sum(tokens[g] for g in rank) for rank in plan]
    assert max(loads) / (sum(tokens) / 2) < 1.05
    contiguous = [sum(tokens[:4]), sum(tokens[4:])]
    assert max(loads) < max(contiguous)
    assert balanced_assignment([5, 5, 5], 2) == [[0, 2], [1]]


def test_rows_round_trip_through_plain_data(model_and_batch):
    from reasoner.training.batch import batch_from_rows, batch_rows

    tok, _, _, batch = model_and_batch
    batch.old_logprobs = torch.randn(batch.response_mask.shape)
    again = batch_from_rows(batch_rows(batch), tok.pad_token_id, group_size=batch.group_size)
    for name in ("input_ids", "attention_mask", "position_ids", "response_mask", "engine_logprobs", "advantages"):
        assert torch.equal(getattr(again, name), getattr(batch, name)), name
    mask = batch.response_mask.bool()
    assert torch.equal(again.old_logprobs[mask], batch.old_logprobs[mask]) and again.group_size == batch.group_size
