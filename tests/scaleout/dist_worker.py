"""A GRPO run for the distributed tests; launched with torchrun (or plain python for one process).

    python -m torch.distributed.run --nproc_per_node 2 dist_worker.py --model DIR --out DIR [key=value ...]

Rollouts come from `SeededEngine`: the HF engine, with each prompt's group sampled from an RNG seeded by the
prompt's tokens. The global batch then depends neither on how prompts are split over ranks nor on where a run
resumed, so a 2-process run and a 1-process run (or a resumed run and a straight one) see the same rollouts and
their parameters can be compared after the same steps.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence

import torch

from reasoner.rollout import RolloutEngine, SamplingParams
from reasoner.rollout.hf_engine import HFEngine

sys.path.insert(0, __import__("os").path.dirname(__file__))
from toy_reward import TOY_REWARD, register  # noqa: E402


class SeededEngine(RolloutEngine):
    def __init__(self, model, tokenizer):
        self.inner = HFEngine(model, tokenizer)

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams):
        out = []
        for prompt in prompts:
            digest = hashlib.sha256(str(list(prompt)).encode()).digest()
            torch.manual_seed(int.from_bytes(digest[:8], "little"))
            out.extend(self.inner.generate([prompt], params))
        return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeded", action="store_true", help="per-prompt seeded rollouts (see module docstring)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)

    from reasoner.config import load_config
    from reasoner.training import TrainConfig, grpo

    register()
    if args.seeded:
        grpo.make_engine = lambda cfg, model, tokenizer: SeededEngine(model, tokenizer)
    base = [f"model.path={args.model}", f"out_dir={args.out}", "data.source=arithmetic", "data.num_examples=64",
            "sampling.n=4", "sampling.max_new_tokens=12", "prompts_per_step=4", "steps=3", "optim.lr=1e-3",
            "log.report_to=[]", "log.progress=false", "log.plots=false", "log.sample_every=1", "threads=1",
            TOY_REWARD]
    cfg = load_config(TrainConfig, None, base + args.overrides)
    result = grpo.train(cfg)
    print(f"[dist_worker] done: {result.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
