"""How small a staleness the sync probe sees: the probe gap of an engine left one step behind, by learning rate.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/probe_sensitivity.py [--lrs 1e-5,1e-4,1e-3]

No vLLM needed: the engine is the HF engine sampling from its own copy of the policy (the situation vLLM is in),
and "stale" means its copy is not updated after the step. For each learning rate, one GRPO update (fixed
advantages of both signs, AdamW) is applied to the policy, then the probe compares the stale engine with the
updated trainer. Compare the numbers with the default thresholds (reasoner.training.sync_check.Thresholds):
fp32 fails above a mean gap of 2e-3, bf16/fp16 above 5e-2.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lrs", default="1e-6,1e-5,1e-4,1e-3")
    args = parser.parse_args()

    import torch

    from reasoner.data import build_prompts
    from reasoner.data.tasks import arithmetic
    from reasoner.models import ModelConfig, TinyModelSpec, build_tiny_model, load_model, load_tokenizer
    from reasoner.rollout import SamplingParams
    from reasoner.rollout.hf_engine import HFEngine
    from reasoner.training import AlgorithmConfig
    from reasoner.training.backend import SingleProcess
    from reasoner.training.batch import Rollouts, collate
    from reasoner.training.config import OptimConfig, SyncCheckConfig
    from reasoner.training.sync_check import SyncProbe
    from reasoner.training.update import update_policy

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="probe_sensitivity_"))
    rows = arithmetic(2000, split="train", seed=0)
    model_dir = build_tiny_model(tmp / "model", [f"{r['problem']} {r['response']}" for r in rows],
                                 TinyModelSpec(vocab_size=1024))
    tok = load_tokenizer(str(model_dir))
    prompts = [p.token_ids for p in build_prompts(tok, arithmetic(64, split="train"))]
    probe = SyncProbe.from_prompts(SyncCheckConfig(), prompts, temperature=1.0, pad_id=tok.pad_token_id)
    print(f"{'lr':>8}  {'mean |d logp|':>13}  {'max':>9}  {'KL':>9}  fails (fp32 defaults)")
    for lr in (float(x) for x in args.lrs.split(",")):
        torch.manual_seed(0)
        policy = load_model(ModelConfig(path=str(model_dir)))
        stale = HFEngine(copy.deepcopy(policy), tok)  # never synced after the update
        groups = stale.generate(prompts[:4], SamplingParams(n=4, max_new_tokens=12))
        batch = collate(Rollouts.from_groups(prompts[:4], groups, [{}] * 4, tok),
                        torch.tensor([1.0, -1.0, 0.5, -0.5] * 4), tok.pad_token_id)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        update_policy(SingleProcess.wrapping(policy, optimizer, scheduler), batch,
                      AlgorithmConfig(), OptimConfig(), temperature=1.0, norm_length=12, generator=torch.Generator())
        r = probe.measure(stale, policy)
        fails = "yes" if probe.failures(r) else "no"
        print(f"{lr:>8.0e}  {r.mean_gap:>13.2e}  {r.max_gap:>9.2e}  {r.kl:>9.2e}  {fails}")


if __name__ == "__main__":
    main()
