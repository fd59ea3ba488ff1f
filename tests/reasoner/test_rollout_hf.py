"""The HF rollout engine: groups, stop handling, and sampling log-probs that match the trainer's forward pass."""
from __future__ import annotations

import pytest
import torch

from reasoner.models import ModelConfig, load_model
from reasoner.rollout import SamplingParams
from reasoner.rollout.hf_engine import HFEngine
from reasoner.training.batch import Rollouts, collate
from reasoner.training.logprobs import score_logprobs


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(ModelConfig(path=str(tiny_model_dir)))


def _prompts(tokenizer, texts):
    return [tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                          tokenize=True)["input_ids"] for t in texts]


def test_groups_are_contiguous_and_in_prompt_order(model, tokenizer):
    prompts = _prompts(tokenizer, ["What is 1 + 2?", "What is 345 * 7? Think step by step.", "Hi"])
    torch.manual_seed(0)
    out = HFEngine(model, tokenizer, max_batch_size=4).generate(prompts, SamplingParams(n=3, max_new_tokens=12))
    assert len(out) == 3 and all(len(group) == 3 for group in out)
    for group in out:
        for c in group:
            assert 1 <= len(c.token_ids) <= 12 and len(c.logprobs) == len(c.token_ids)
            assert c.finish_reason in ("stop", "length")
            assert all(lp <= 0 for lp in c.logprobs)
    # A batch split (max_batch_size=4 over 9 sequences) must not reorder groups: greedy decoding of the same
    # prompt in one call gives the same tokens as its group in the split call.
    greedy = HFEngine(model, tokenizer, max_batch_size=4).generate(prompts, SamplingParams(n=3, temperature=0,
                                                                                         max_new_tokens=8))
    alone = HFEngine(model, tokenizer).generate(prompts[1:2], SamplingParams(n=1, temperature=0, max_new_tokens=8))
    assert greedy[1][0].token_ids == greedy[1][2].token_ids == alone[0][0].token_ids


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_logprobs_match_trainer_forward_on_padded_batch(model, tokenizer, temperature):
    prompts = _prompts(tokenizer, ["What is 12 + 7?", "What is 4821 + 90 plus a longer question text?"])
    torch.manual_seed(1)
    engine = HFEngine(model, tokenizer)
    groups = engine.generate(prompts, SamplingParams(n=4, temperature=temperature, max_new_tokens=20))
    rollouts = Rollouts.from_groups(prompts, groups, [{}, {}], tokenizer)
    batch = collate(rollouts, torch.zeros(rollouts.size), tokenizer.pad_token_id)
    trainer_lp = score_logprobs(model, batch, temperature)
    mask = batch.attention_mask[:, -batch.response_width:].float()
    assert torch.allclose(trainer_lp * mask, batch.engine_logprobs * mask, atol=2e-4)


def test_stop_tokens_and_length_limit(model, tokenizer):
    prompt = _prompts(tokenizer, ["What is 5 + 5?"])
    engine = HFEngine(model, tokenizer)
    first = engine.generate(prompt, SamplingParams(n=1, temperature=0, max_new_tokens=6))[0][0]
    assert first.finish_reason == "length" and len(first.token_ids) == 6 or first.finish_reason == "stop"
    # Make the first greedy token a stop token: generation ends right there, the stop token included.
    stopped = engine.generate(prompt, SamplingParams(n=2, temperature=0, max_new_tokens=6,
                                                     stop_token_ids=[first.token_ids[0]]))[0]
    assert all(c.token_ids == first.token_ids[:1] and c.finish_reason == "stop" for c in stopped)


def test_sampling_params_are_validated():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="n must be"):
        SamplingParams(n=0)


def test_checkpoint_generation_defaults_do_not_leak_into_sampling(tiny_model_dir, tokenizer):
    """A checkpoint's generation_config (top-k, top-p, repetition penalty, ...) and the library's default top_k=50
    must not truncate or reshape RL sampling: first tokens follow softmax(logits / T) of the full vocabulary."""
    model = load_model(ModelConfig(path=str(tiny_model_dir)), trainable=False)
    gc = model.generation_config
    gc.top_k, gc.top_p, gc.repetition_penalty, gc.min_p, gc.no_repeat_ngram_size = 3, 0.3, 3.0, 0.2, 1
    prompt = _prompts(tokenizer, ["What is 3 + 4 + 5?"])[0]
    temperature = 1.5  # flattens the distribution so a truncation would show clearly
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1]
    probs = torch.softmax(logits / temperature, dim=-1)
    n = 3000
    torch.manual_seed(0)
    groups = HFEngine(model, tokenizer, max_batch_size=n).generate(
        [prompt], SamplingParams(n=n, temperature=temperature, max_new_tokens=1))
    counts = torch.bincount(torch.tensor([c.token_ids[0] for c in groups[0]]), minlength=probs.numel()).float()
    total_variation = 0.5 * (counts / n - probs).abs().sum()
    # Sampling noise alone gives ~0.5*sqrt(V/(2*pi*n)) ~ 0.07 for V~400; truncation to 3 tokens would give ~0.9.
    assert total_variation < 0.15, float(total_variation)
    assert (counts > 0).sum() > 50
