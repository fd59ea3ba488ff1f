"""The real-shape paths on a GPU, offline, in a few minutes: writes a JSON report of what ran and what it measured.

    scripts/gpu_check.sh [--out gpu_check.json]     # on a machine with an NVIDIA GPU, with its own python3
    python scripts/gpu_check.py --smoke             # the same steps at toy size on CPU (CI keeps it from rotting)

Steps, each recorded with its numbers or the reason it was skipped (a missing package, no GPU) or failed:
1. environment: torch / CUDA / GPU, and which optional packages are importable (deepspeed, vllm, math_verify,
   datasets);
2. a Qwen2.5-1.5B-config model with random weights (V = 151,936, tied head) in bf16 on the GPU — no hub needed;
3. generation with the HF engine's decode loop: 8 samples of `--answer` (4,096) tokens (`ignore_eos`), tokens/s;
4. the GRPO update on those samples: packed rows, the fused head, a token budget, AdamW: seconds per update,
   update tokens/s, peak GPU memory, the parameters' change (it must move);
5. the materialised-logits reference path on the same batch, to compare peak memory (an out-of-memory error is
   recorded as such);
6. the same update through DeepSpeed ZeRO-3 on one GPU (the reference path: ZeRO-3 partitions the head), when
   DeepSpeed is installed.
Nothing here needs the network, vLLM, math-verify or datasets.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QWEN25_15B = dict(vocab_size=151_936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                  num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
SMOKE = dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True)


def step(report: dict, name: str):
    """Decorator-like helper: run `fn`, record its result, its seconds, or its error, and go on."""
    def run(fn):
        t0 = time.perf_counter()
        try:
            report[name] = {"ok": True, **(fn() or {})}
        except _Skip as s:
            report[name] = {"ok": None, "skipped": str(s)}
        except Exception as e:  # noqa: BLE001 - the report records every failure and the script goes on
            oom = "out of memory" in str(e).lower()
            report[name] = {"ok": False, "error": "out of memory" if oom else f"{type(e).__name__}: {e}"[:500],
                            "traceback": traceback.format_exc()[-2000:]}
        report[name]["seconds"] = round(time.perf_counter() - t0, 2)
        print(f"[gpu_check] {name}: {json.dumps({k: v for k, v in report[name].items() if k != 'traceback'})}",
              flush=True)
    return run


class _Skip(Exception):
    pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--smoke", action="store_true", help="toy sizes on CPU")
    p.add_argument("--answer", type=int, default=4096, help="tokens per sampled answer")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=16384, help="optim.max_tokens_per_micro_batch")
    args = p.parse_args()
    import torch

    if args.smoke:
        args.answer, args.samples, args.max_tokens = 64, 4, 128
    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    report: dict = {"args": vars(args)}
    state: dict = {}

    @step(report, "environment")
    def _():
        return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                "gpu": torch.cuda.get_device_name(0) if cuda else None,
                "packages": {name: importlib.util.find_spec(name) is not None
                             for name in ("transformers", "deepspeed", "vllm", "math_verify", "datasets", "peft")}}

    @step(report, "model")
    def _():
        from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

        from reasoner.data.tasks import arithmetic
        from reasoner.models.tiny import train_tokenizer

        torch.manual_seed(0)
        config = Qwen2Config(**(SMOKE if args.smoke else QWEN25_15B))
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / "reasoner_gpu_check_tokenizer"
        train_tokenizer([r["problem"] for r in arithmetic(300, split="train")], 512).save_pretrained(folder)
        state.update(model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
        return {"parameters": sum(p.numel() for p in model.parameters()), "dtype": str(dtype), "device": str(device)}

    @step(report, "generation")
    def _():
        if "model" not in state:
            raise _Skip("no model")
        from reasoner.rollout.base import SamplingParams
        from reasoner.rollout.hf_engine import HFEngine

        engine = HFEngine(state["model"], state["tokenizer"], compact_below=0.0)
        prompt = list(range(10, 138))
        _sync(cuda)
        t0 = time.perf_counter()
        groups = engine.generate([prompt], SamplingParams(n=args.samples, max_new_tokens=args.answer, ignore_eos=True))
        _sync(cuda)
        seconds = time.perf_counter() - t0
        state["rollout"] = (prompt, groups[0])
        tokens = sum(len(c.token_ids) for c in groups[0])
        return {"tokens": tokens, "tokens_per_s": round(tokens / seconds, 1), "decode_path": engine.decode_path}

    def update(name: str, *, reference: bool = False, zero3: bool = False) -> dict:
        if "rollout" not in state:
            raise _Skip("no rollout")
        from reasoner.training import AlgorithmConfig
        from reasoner.training.backend import DistributedConfig
        from reasoner.training.backend_factory import make_backend
        from reasoner.training.batch import Rollouts, collate
        from reasoner.training.config import OptimConfig
        from reasoner.training.logprobs import PolicyScorer
        from reasoner.training.update import update_policy

        model = state["model"]
        prompt, completions = state["rollout"]
        n = len(completions)
        rollouts = Rollouts(prompt_ids=[prompt] * n, completions=completions, texts=[""] * n, examples=[{}] * n,
                            group_size=n)
        batch = collate(rollouts, torch.randn(len(completions), generator=torch.Generator().manual_seed(0)),
                        pad_id=0, device=device)
        backend = make_backend(DistributedConfig(backend="deepspeed", deepspeed_config="zero3") if zero3
                               else DistributedConfig(backend="single"))
        before = [p.detach().float().clone() for p in model.parameters()][:4]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        fast = not (reference or zero3)
        scorer = PolicyScorer(model, packed=fast, fused_head=fast, partitioned=backend.partitions_parameters)
        backend.prepare(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                        max_grad_norm=1.0, scorer=scorer)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        _sync(cuda)
        t0 = time.perf_counter()
        optim = OptimConfig(max_tokens_per_micro_batch=args.max_tokens)
        stats = update_policy(backend, batch, AlgorithmConfig(), optim, temperature=1.0, norm_length=args.answer,
                              generator=torch.Generator().manual_seed(0))
        _sync(cuda)
        seconds = time.perf_counter() - t0
        with backend.full_weights() as module:
            moved = float(sum((p.detach().float() - b).abs().mean() for p, b in zip(module.parameters(), before)))
        tokens = int(batch.attention_mask.sum())
        return {"path": scorer.plan(batch) if not zero3 else "reference (ZeRO-3)", "seconds": round(seconds, 2),
                "tokens_per_s": round(tokens / seconds, 1), "peak_gpu_gib": _peak(cuda), "param_change": moved,
                "grad_norm": stats["grad_norm"], "loss": stats["loss"]}

    step(report, "update_packed_fused")(lambda: update("packed"))
    step(report, "update_reference")(lambda: update("reference", reference=True))

    @step(report, "update_zero3")  # last: ZeRO-3 partitions the model's parameters in place
    def _():
        if importlib.util.find_spec("deepspeed") is None:
            raise _Skip("deepspeed is not installed (carry its wheel to run this step)")
        return update("zero3", zero3=True)

    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"[gpu_check] report: {args.out}")
    failed = [k for k, v in report.items() if isinstance(v, dict) and v.get("ok") is False
              and v.get("error") != "out of memory"]
    return 1 if failed else 0


def _sync(cuda: bool) -> None:
    if cuda:
        import torch
        torch.cuda.synchronize()


def _peak(cuda: bool) -> float | None:
    if not cuda:
        return None
    import torch
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


if __name__ == "__main__":
    sys.exit(main())
