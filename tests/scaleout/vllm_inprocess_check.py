"""Run by test_vllm_grpo.py in its own process: the vLLM engine core in-process (`in_process: true`), where
weights reach the workers as tensors (the transport GPU colocation uses), and an engine in `raw_logprobs` mode
sampling with top-k (cheap to start in-process). Prints one JSON line of results.

Its own process because VLLM_ENABLE_V1_MULTIPROCESSING=0 stays set for the whole process once used."""
from __future__ import annotations

import json
import sys

if __name__ == "__main__":
    import torch

    from reasoner.data import build_prompts
    from reasoner.data.tasks import arithmetic
    from reasoner.models import ModelConfig, load_model, load_tokenizer
    from reasoner.rollout import SamplingParams
    from reasoner.rollout.vllm_engine import VLLMEngine
    from reasoner.rollout.vllm_options import VLLMOptions
    from reasoner.training import AlgorithmConfig
    from reasoner.training.backend import SingleProcess
    from reasoner.training.batch import Rollouts, collate
    from reasoner.training.config import OptimConfig, SyncCheckConfig
    from reasoner.training.sync_check import SyncProbe
    from reasoner.training.update import update_policy

    model_dir = sys.argv[1]
    tok = load_tokenizer(model_dir)
    policy = load_model(ModelConfig(path=model_dir))
    prompts = [p.token_ids for p in build_prompts(tok, arithmetic(16, split="train"))]
    engine = VLLMEngine.from_model(policy, tok, VLLMOptions(in_process=True))
    probe = SyncProbe.from_prompts(SyncCheckConfig(), prompts, temperature=1.0, pad_id=tok.pad_token_id)
    before = probe.measure(engine, policy)
    groups = engine.generate(prompts[:4], SamplingParams(n=4, max_new_tokens=12))
    batch = collate(Rollouts.from_groups(prompts[:4], groups, [{}] * 4, tok), torch.tensor([1.0, -1.0] * 8),
                    tok.pad_token_id)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    update_policy(SingleProcess.wrapping(policy, optimizer, scheduler), batch,
                  AlgorithmConfig(), OptimConfig(), temperature=1.0, norm_length=12, generator=torch.Generator())
    stale = probe.measure(engine, policy)
    engine.sync_weights(policy)
    after = probe.measure(engine, policy)
    engine.close()

    # logprobs_mode=raw_logprobs: top-k sampling at T = 1 with log-probs before the truncation (the contract)
    raw = VLLMEngine.from_model(policy, tok, VLLMOptions(in_process=True, logprobs_mode="raw_logprobs"))
    groups = raw.generate(prompts[:4], SamplingParams(n=4, top_k=20, max_new_tokens=12))
    raw.close()
    from reasoner.training.sync_check import compare
    flat = [c for g in groups for c in g]
    raw_gap = compare(policy, [p for p in prompts[:4] for _ in range(4)], flat, temperature=1.0,
                      pad_id=tok.pad_token_id)
    print(json.dumps({"transport": engine.transport, "before": before.max_gap, "stale": stale.mean_gap,
                      "after": after.max_gap, "after_failures": probe.failures(after),
                      "raw_topk_gap": raw_gap.max_gap, "raw_tokens": raw_gap.tokens}))
