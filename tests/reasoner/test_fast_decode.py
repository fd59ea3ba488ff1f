"""The HF engine's lean decode loop (`reasoner.rollout.fast_decode`) against transformers' own forward/generate."""
from __future__ import annotations

import pytest
import torch

from reasoner.rollout import fast_decode
from reasoner.rollout.base import SamplingParams
from reasoner.rollout.hf_engine import HFEngine


def _random_model(kind: str, **extra):
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen3Config

    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=256, tie_word_embeddings=False,
                  pad_token_id=0, eos_token_id=1, bos_token_id=None)
    cfg = {"qwen3": Qwen3Config, "llama": LlamaConfig, "mistral": MistralConfig}[kind](**common, **extra)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():      # non-trivial norms, so q/k normalisation and the layer norms are exercised
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


def _left_padded(rows: list[list[int]]):
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


class _Tok:
    pad_token_id, eos_token_id = 0, 1


PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]


def _forward_logprobs(model, ids, mask, tokens):
    """Log-probs of `tokens` continuing the left-padded prompts, from one plain forward."""
    full_ids = torch.cat([ids, tokens], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(tokens)], dim=1)
    positions = (full_mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=full_ids, attention_mask=full_mask, position_ids=positions).logits
    logits = logits[:, ids.shape[1] - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(2, tokens[..., None]).squeeze(2), logits


@pytest.mark.parametrize("kind, extra", [("qwen3", {}), ("llama", {}), ("llama", {"attention_bias": True}),
                                         ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
                                         ("mistral", {"sliding_window": None})])
def test_decoder_logprobs_equal_the_models_forward(kind, extra):
    """Greedy, no stop: every step's log-probs equal those of one plain forward over prompt + continuation,
    padded rows included, and every token is that forward's argmax; with and without fused projections."""
    model = _random_model(kind, **extra)
    assert fast_decode.unsupported_reason(model) is None
    ids, mask = _left_padded(PROMPTS)
    prefix = fast_decode.prefix_kv(HFEngine(model, _Tok())._prefill(ids, mask))
    for fuse_limit in (fast_decode.FUSE_LIMIT_BYTES, 0):
        decoder = fast_decode.Decoder(model, fuse_limit=fuse_limit)
        assert (decoder.layers[0].qkv.fused is not None) == (fuse_limit > 0)
        tokens, logprobs = decoder.sample(prefix, 1, ids[:, -1], mask, max_new_tokens=12, stop_ids=[], pad_id=0,
                                          temperature=0, top_k=0, top_p=1.0)
        assert tokens.shape == (3, 12)
        ref, logits = _forward_logprobs(model, ids, mask, tokens)
        torch.testing.assert_close(logprobs, ref, atol=2e-5, rtol=0)
        assert torch.equal(tokens, logits.argmax(-1))      # no near-ties in this random model


def test_dropping_finished_rows_keeps_every_rows_values():
    """Sampled rows that stop at different steps, with finished rows dropped from the batch as they go: each
    row's log-probs up to its stop equal the plain forward's, and greedy decoding gives the same tokens with and
    without dropping."""
    model = _random_model("qwen3")
    n = 4
    ids, mask = _left_padded(PROMPTS)
    prefix = fast_decode.prefix_kv(HFEngine(model, _Tok())._prefill(ids, mask))
    rep_ids, rep_mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
    stops = list(range(2, 97, 7))                           # rows stop early, at different steps
    decoder = fast_decode.Decoder(model)
    torch.manual_seed(3)
    tokens, logprobs = decoder.sample(prefix, n, rep_ids[:, -1], rep_mask, max_new_tokens=30, stop_ids=stops,
                                      pad_id=0, temperature=1.0, top_k=0, top_p=1.0, compact_below=0.75)
    ends = [next((j for j, t in enumerate(row) if t in stops), None) for row in tokens.tolist()]
    assert len({e for e in ends if e is not None}) >= 4, ends  # stops spread over several steps
    ref, _ = _forward_logprobs(model, rep_ids, rep_mask, tokens)
    for i, end in enumerate(ends):
        upto = tokens.shape[1] if end is None else end + 1
        torch.testing.assert_close(logprobs[i, :upto], ref[i, :upto], atol=2e-5, rtol=0)
        assert (tokens[i, upto:] == 0).all() and (logprobs[i, upto:] == 0).all()
    greedy = [decoder.sample(prefix, n, rep_ids[:, -1], rep_mask, max_new_tokens=30, stop_ids=stops, pad_id=0,
                             temperature=0, top_k=0, top_p=1.0, compact_below=c) for c in (0.0, 0.75)]
    assert torch.equal(greedy[0][0], greedy[1][0])
    torch.testing.assert_close(greedy[0][1], greedy[1][1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("params", [SamplingParams(n=4, temperature=1.0, max_new_tokens=16),
                                    SamplingParams(n=3, temperature=0.7, top_k=20, top_p=0.9, max_new_tokens=16),
                                    SamplingParams(n=2, temperature=0, max_new_tokens=10)])
def test_samples_equal_generate_under_the_same_seed(params):
    """Same RNG consumption (without dropping finished rows) and the same warpers as `generate`: identical
    tokens, stops and log-probs."""
    model = _random_model("qwen3")
    runs = {}
    for fast in (True, False):
        torch.manual_seed(1234)
        engine = HFEngine(model, _Tok(), fast_decode=fast, compact_below=0.0)
        assert engine.decode_path == ("fast" if fast else "generate")
        runs[fast] = engine.generate(PROMPTS, SamplingParams(**{**params.__dict__, "stop_token_ids": [3]}))
    for group_fast, group_gen in zip(runs[True], runs[False]):
        for a, b in zip(group_fast, group_gen):
            assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
            torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=2e-5, rtol=0)
    assert any(c.finish_reason == "stop" for g in runs[True] for c in g) or params.temperature == 0


def test_warp_matches_transformers_warpers():
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(5, 50) * 3
    logits[0, :10] = 2.0                     # ties at the top-k boundary
    for t, k, p in [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (0.9, 12, 0.6)]:
        ref = TemperatureLogitsWarper(t)(None, logits.clone())
        if k:
            ref = TopKLogitsWarper(k)(None, ref)
        if p < 1:
            ref = TopPLogitsWarper(p)(None, ref)
        assert torch.equal(fast_decode.warp(logits, t, k, p), ref)


def test_unsupported_models_fall_back_to_generate():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2, n_positions=64))
    assert "gpt2" in fast_decode.unsupported_reason(gpt2)
    engine = HFEngine(gpt2, _Tok())
    assert engine.decode_path == "generate"
    out = engine.generate([[5, 6, 7]], SamplingParams(n=2, max_new_tokens=4))
    assert [len(c.token_ids) for c in out[0]] == [4, 4]
    model = _random_model("qwen3")
    model.model.layers[0].mlp.up_proj = torch.nn.Sequential(model.model.layers[0].mlp.up_proj)   # a wrapped layer
    assert "nn.Linear" in fast_decode.unsupported_reason(model)
    assert "sliding" in fast_decode.unsupported_reason(_random_model("mistral", sliding_window=4))
    assert "sliding" in fast_decode.unsupported_reason(
        _random_model("qwen3", use_sliding_window=True, sliding_window=4, max_window_layers=0))
