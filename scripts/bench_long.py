"""The GRPO update at real R1 shapes: V = 151,936, answers up to 4,096 tokens, groups of 8 — reasoner vs TRL.

    python scripts/bench_long.py                       # everything below, ~30-60 min on 2 cores
    python scripts/bench_long.py --only reasoner --lengths 256 1024 --steps 2
    python scripts/bench_long.py --plot docs/scaling_long.png
    python scripts/bench_long.py --generation        # the HF engine's decode loop: tokens/s vs position to 8k

Model: a Qwen3-config body (4 layers, hidden 256, head dim 64, tied embeddings) with the real vocabulary size
151,936 and random weights, so the output head dominates as in real models (the body is small only to fit the
machine). Workloads, token ids drawn at random (no generation: the update is measured on the same tokens in both
systems):
- fixed: one prompt of 128 tokens, 8 answers of L tokens, for L = 256 / 1,024 / 2,048 / 4,096;
- mix: 2 prompts x 8 answers, lengths log-uniform in [64, 4096] (seeded), as real traces are long-tailed.
Each case runs in a fresh subprocess: `--steps` optimizer steps (AdamW, one micro-batch holding the whole batch
unless `--max-tokens`), timed after one warm-up step. Measured from outside the process: its peak resident memory
(`wait4` rusage); the child reports the resident memory it held before the first update (model, optimizer,
batch), so "update extra" = peak - that.

Peers, in the same run:
- reasoner, as configured by default (`optim.packed` / `optim.fused_head` auto: packed rows, the fused head);
- reasoner `--reference`: the padded path with materialised logits (what the trainer did before);
- TRL's `GRPOTrainer` (its own training step, chunked LM head, loss `dapo`), at the same micro-batch
  (`per_device_train_batch_size` = the whole batch), with gradient checkpointing (TRL's default) and without;
  its generation is replaced by the fixed batch (`_generate_and_score_completions` returns it), everything after
  is TRL's own. A TRL case that runs out of memory is reported as such.
"processed / real" = tokens the forward computed / real prompt + answer tokens (padding counts as processed).
The last lines print the memory ratios reasoner / TRL.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOCAB = 151_936
PROMPT = 128
GROUP = 8
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# ------------------------------------------------------------------------------------------------ workloads

def workload(name: str, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """(prompts, answers) token ids: prompts repeated per answer (groups of GROUP contiguous)."""
    rng = random.Random(f"{name}-{seed}")
    if name == "mix":
        groups, lengths = 2, [int(math.exp(rng.uniform(math.log(64), math.log(4096)))) for _ in range(2 * GROUP)]
    else:
        groups, lengths = 1, [int(name)] * GROUP
    prompts = [[rng.randrange(3, VOCAB) for _ in range(PROMPT)] for _ in range(groups)]
    return ([p for p in prompts for _ in range(GROUP)],
            [[rng.randrange(3, VOCAB) for _ in range(n)] for n in lengths])


def build_model(folder: Path, layers: int, hidden: int) -> Path:
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from reasoner.data.tasks import arithmetic
    from reasoner.models.tiny import train_tokenizer

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=hidden * 11 // 4,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=8448, tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer = train_tokenizer([r["problem"] for r in arithmetic(500, split="train")], 512)  # TRL wants one
    tokenizer.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------------------------------------ children

def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def child_reasoner(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from reasoner.rollout.base import Completion
    from reasoner.training import AlgorithmConfig
    from reasoner.training.backend import SingleProcess
    from reasoner.training.batch import Rollouts, collate
    from reasoner.training.config import OptimConfig
    from reasoner.training.logprobs import PolicyScorer
    from reasoner.training.update import micro_batches, update_policy

    torch.set_num_threads(args.threads)
    prompts, answers = workload(args.workload)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")
    if args.gradient_checkpointing:  # model.gradient_checkpointing: true (the packed path stays exact under it)
        model.gradient_checkpointing_enable()
    model.train()
    ro = Rollouts(prompt_ids=prompts, completions=[Completion(a, [0.0] * len(a), "stop") for a in answers],
                  texts=[""] * len(answers), examples=[{}] * len(answers), group_size=GROUP)
    gen = torch.Generator().manual_seed(0)
    batch = collate(ro, torch.randn(len(answers), generator=gen), pad_id=0)
    ref = args.reference
    scorer = PolicyScorer(model, packed=False if ref else None, fused_head=False if ref else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    backend = SingleProcess()
    backend.prepare(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), scorer=scorer)
    optim = OptimConfig(max_grad_norm=1.0, max_tokens_per_micro_batch=args.max_tokens)
    processed = 0
    for part in micro_batches(batch, torch.arange(batch.size), optim, backend):
        pack, _ = scorer.plan(part)
        processed += int(part.attention_mask.sum()) if pack else int(part.input_ids.numel())
    before = _rss()
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        update_policy(backend, batch, AlgorithmConfig(), optim, temperature=1.0, norm_length=max(map(len, answers)),
                      generator=torch.Generator().manual_seed(step))
        times.append(time.perf_counter() - t0)
    return {"rss_before": before, "step_s": sorted(times[1:])[len(times[1:]) // 2], "processed": processed,
            "real": int(batch.attention_mask.sum()),
            "path": ("reference" if ref else "packed+fused (auto)") + (" +gc" if args.gradient_checkpointing else "")}


def child_trl(args) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(args.threads)
    prompts, answers = workload(args.workload)
    n = len(answers)
    width_p, width_t = max(map(len, prompts)), max(map(len, answers))
    prompt_ids = torch.zeros((n, width_p), dtype=torch.long)
    prompt_mask = torch.zeros((n, width_p), dtype=torch.long)
    completion_ids = torch.zeros((n, width_t), dtype=torch.long)
    completion_mask = torch.zeros((n, width_t), dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts, answers)):  # TRL's layout: left-padded prompts, right-padded answers
        prompt_ids[i, width_p - len(p):], prompt_mask[i, width_p - len(p):] = torch.tensor(p), 1
        completion_ids[i, :len(a)], completion_mask[i, :len(a)] = torch.tensor(a), 1
    fixed = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
             "completion_mask": completion_mask,
             "advantages": torch.randn(n, generator=torch.Generator().manual_seed(0)),
             "num_items_in_batch": completion_mask.sum()}

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(output_dir=out, use_cpu=True, bf16=False, per_device_train_batch_size=n,
                         gradient_accumulation_steps=1, num_generations=GROUP, max_completion_length=width_t,
                         max_steps=args.steps + 1, learning_rate=1e-6, beta=0.0, report_to="none",
                         save_strategy="no", logging_steps=1, gradient_checkpointing=args.gradient_checkpointing,
                         dataloader_num_workers=0, disable_tqdm=True)
        data = datasets.Dataset.from_dict({"prompt": [f"p{i}" for i in range(n // GROUP)]})
        trainer = GRPOTrainer(model=model, reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                              args=cfg, train_dataset=data, processing_class=tokenizer)
        trainer._generate_and_score_completions = lambda inputs: dict(fixed)  # no generation: the fixed batch
        times: list[float] = []
        before = {}

        class Timer(TrainerCallback):
            def on_step_begin(self, *a, **k):
                before.setdefault("rss", _rss())
                self.t0 = time.perf_counter()

            def on_step_end(self, *a, **k):
                times.append(time.perf_counter() - self.t0)

        trainer.add_callback(Timer())
        trainer.train()
    return {"rss_before": before["rss"], "step_s": sorted(times[1:])[len(times[1:]) // 2],
            "processed": n * (width_p + width_t), "real": int(prompt_mask.sum() + completion_mask.sum()),
            "path": "TRL GRPOTrainer" + (" +gc" if args.gradient_checkpointing else "")}


def generation(model_dir: Path, args) -> None:
    """Tokens/s of the HF engine's lean decode loop at growing lengths: 8 rows of one 128-token prompt, the
    same seed; the rate between consecutive lengths is the marginal rate at those positions."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasoner.rollout.base import SamplingParams
    from reasoner.rollout.hf_engine import HFEngine

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    engine = HFEngine(model, AutoTokenizer.from_pretrained(model_dir), compact_below=0.0)
    prompt = workload("256")[0][0]
    previous = (0, 0.0)
    for length in args.gen_lengths:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        out = engine.generate([prompt], SamplingParams(n=GROUP, max_new_tokens=length, ignore_eos=True))
        seconds = time.perf_counter() - t0
        tokens = sum(len(c.token_ids) for c in out[0])
        marginal = (tokens - previous[0]) / max(seconds - previous[1], 1e-9)
        print(f"max_new_tokens {length:5d}: {tokens:6d} tokens in {seconds:7.1f} s = {tokens / seconds:6.1f} tok/s; "
              f"between {previous[0] // GROUP} and {tokens // GROUP} tokens per row: {marginal:6.1f} tok/s",
              flush=True)
        previous = (tokens, seconds)


# ------------------------------------------------------------------------------------------------ driver

def run_case(system: str, workload_name: str, model: Path, args, **extra) -> dict:
    cmd = [sys.executable, __file__, "--child", system, "--workload", workload_name, "--model", str(model),
           "--steps", str(args.steps), "--threads", str(args.threads), "--max-tokens", str(args.max_tokens)]
    cmd += [f"--{k.replace('_', '-')}" for k, v in extra.items() if v]
    limit = int(args.memory_limit_gb * 2**30)

    def cap_memory() -> None:  # a peer that runs out of memory fails alone, not the machine (RLIMIT_DATA: heap + mmap)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **CHILD_ENV}, preexec_fn=cap_memory if limit > 0 else None)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    peak = usage.ru_maxrss * 1024
    code = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if code != 0 or line is None:
        oom = (code in (-9, 137) or "out of memory" in err.lower() or "MemoryError" in err
               or "can't allocate memory" in err)
        return {"system": system, "workload": workload_name, "error": "out of memory" if oom else
                f"rc {code}: {err.strip().splitlines()[-1] if err.strip() else ''}", "peak": peak, **extra}
    result = json.loads(line[len("RESULT "):])
    return {"system": system, "workload": workload_name, "peak": peak, "extra": peak - result["rss_before"],
            **result, **extra}


def fmt(r: dict) -> str:
    head = f"{r['workload']:>5} {r.get('path', r['system']):24}"
    if "error" in r:
        return f"{head} {r['error']} (peak {r['peak'] / 2**30:.2f} GiB)"
    return (f"{head} peak {r['peak'] / 2**30:6.2f} GiB  update extra {r['extra'] / 2**30:6.2f} GiB  "
            f"{r['step_s']:7.2f} s/step  {r['step_s'] / r['real'] * 1e3:6.3f} ms/token  "
            f"processed/real {r['processed'] / r['real']:.2f}")


def fit_attention(rows: list[dict]) -> str:
    """Least squares of s/step = a + b*L + c*L^2 over the fixed-length cases (the c*L^2 term is attention)."""
    import numpy as np
    pts = [(int(r["workload"]), r["step_s"]) for r in rows if r["workload"] != "mix" and "step_s" in r]
    if len(pts) < 3:
        return "too few fixed-length points to fit"
    length = np.array([p[0] for p in pts], dtype=float)
    a, b, c = np.linalg.lstsq(np.stack([np.ones_like(length), length, length**2], 1),
                              np.array([p[1] for p in pts]), rcond=None)[0]
    per_token = [(int(x), y / (GROUP * x)) for x, y in pts]
    return (f"fit s/step = {a:.3g} + {b:.3g}*L + {c:.3g}*L^2; per answer token: "
            + ", ".join(f"L={x}: {y * 1e3:.3f} ms" for x, y in per_token)
            + f"; the L^2 term is {c * 4096**2 / (a + b * 4096 + c * 4096**2):.0%} of the step at L=4096")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, tim) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for label in sorted({r.get("path", r["system"]) for r in rows}):
        pts = sorted((int(r["workload"]), r) for r in rows if r.get("path", r["system"]) == label
                     and r["workload"] != "mix" and "step_s" in r)
        if not pts:
            continue
        xs = [x for x, _ in pts]
        mem.plot(xs, [r["peak"] / 2**30 for _, r in pts], marker="o", label=label)
        tim.plot(xs, [r["step_s"] for _, r in pts], marker="o", label=label)
    mem.set(xlabel="answer length (tokens), 8 answers", ylabel="peak resident memory (GiB)",
            title="memory of the update")
    tim.set(xlabel="answer length (tokens), 8 answers", ylabel="seconds per update", title="time of the update")
    for ax in (mem, tim):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", nargs="*", default=["256", "1024", "2048", "4096"])
    p.add_argument("--mix", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--only", choices=["reasoner", "trl"], default=None)
    p.add_argument("--steps", type=int, default=2, help="timed optimizer steps (after one warm-up)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--max-tokens", type=int, default=0, help="reasoner's optim.max_tokens_per_micro_batch")
    p.add_argument("--model-dir", default=os.path.join(tempfile.gettempdir(), "reasoner_bench_long_model"))
    p.add_argument("--memory-limit-gb", type=float, default=16.0,
                   help="cap each case's data memory (RLIMIT_DATA); a case over it is reported as out of memory")
    p.add_argument("--plot", help="write the scaling curves (memory and time vs answer length) to this PNG")
    p.add_argument("--json", help="write every result to this file")
    p.add_argument("--generation", action="store_true", help="measure the decode loop instead (tokens/s)")
    p.add_argument("--gen-lengths", type=int, nargs="*", default=[1024, 2048, 4096, 8192])
    p.add_argument("--child", choices=["reasoner", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gradient-checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = (child_reasoner if args.child == "reasoner" else child_trl)(args)
        print("RESULT " + json.dumps(result))
        return
    model = build_model(Path(args.model_dir), args.layers, args.hidden)
    if args.generation:
        generation(model, args)
        return
    print(f"model: Qwen3 body {args.layers} layers x {args.hidden}, V = {VOCAB}, tied head; {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    cases = []
    for name in args.lengths + (["mix"] if args.mix else []):
        if args.only in (None, "reasoner"):
            cases += [("reasoner", name, {}), ("reasoner", name, {"gradient_checkpointing": True}),
                      ("reasoner", name, {"reference": True})]
        if args.only in (None, "trl"):
            cases += [("trl", name, {"gradient_checkpointing": True}), ("trl", name, {})]
    rows = []
    for system, name, extra in cases:
        rows.append(run_case(system, name, model, args, **extra))
        print(fmt(rows[-1]), flush=True)
    print(fit_attention([r for r in rows if r["system"] == "reasoner" and not r.get("reference")
                         and not r.get("gradient_checkpointing")]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.plot:
        plot(rows, Path(args.plot))
    for gc in (False, True):  # like with like: reasoner vs TRL's best, and both with gradient checkpointing
        ours = {r["workload"]: r for r in rows if r["system"] == "reasoner" and not r.get("reference")
                and bool(r.get("gradient_checkpointing")) == gc and "extra" in r}
        for name in args.lengths + (["mix"] if args.mix else []):
            trl = [r for r in rows if r["system"] == "trl" and r["workload"] == name and "extra" in r
                   and (not gc or r.get("gradient_checkpointing"))]
            if name not in ours or not [r for r in rows if r["system"] == "trl" and r["workload"] == name]:
                continue
            if not trl:
                print(f"{name}: TRL out of memory; reasoner ({ours[name]['path']}) peak "
                      f"{ours[name]['peak'] / 2**30:.2f} GiB")
                continue
            best = min(trl, key=lambda r: r["peak"])
            print(f"{name}: memory reasoner ({ours[name]['path']}) / {best['path']}: peak "
                  f"{ours[name]['peak'] / best['peak']:.2f}x, "
                  f"update extra {ours[name]['extra'] / max(best['extra'], 1):.2f}x")

if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
