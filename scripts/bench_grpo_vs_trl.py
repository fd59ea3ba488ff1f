#!/usr/bin/env python
"""GRPO step time: reasoner vs TRL's GRPOTrainer vs the bare compute, in one run, on the same work.

Same tiny Qwen3-config model (hidden 192, 6 layers, 1,024-token BPE; ~2.6M parameters, freshly initialised so
that completions run to the length limit in every system), same prompts (the arithmetic task, chat template),
16 prompts x 8 completions x 48 new tokens per step, temperature 1, beta 0, lr 1e-5, float32, no gradient
checkpointing (TRL's defaults of bf16 + checkpointing are slower on CPU; they are turned off to compare with TRL
at its fastest), the same rewards: math + format (TRL gets them through `reasoner_verifiers.adapters`) plus a
dense reward,
the fraction of digit characters. An untrained model gets 0 from math and format on every completion; without
the dense reward every group would have zero advantage, and reasoner — which skips groups that carry no gradient —
would do no update at all while TRL still does. With it, every group varies and both do the full update.

reasoner's trainer samples with its lean decode loop (`reasoner/rollout/fast_decode.py`, the HF engine's default
for Llama-family models) and sets glibc to keep freed heap pages (`reasoner/training/allocator.py`,
`keep_freed_memory: true` by default); TRL and the bare compute run as their users run them, with the default
allocator. `--peers-keep-freed-memory` gives them the allocator setting too; `--no-keep-freed-memory` takes it
from reasoner.

"Bare compute" is the floor: one `model.generate` of the same batch plus one forward/backward and optimizer step
over the same tokens, with nothing else. Each system runs in its own subprocess with the same thread count; the
first `--warmup` steps are discarded and the median of the rest is reported.

    python scripts/bench_grpo_vs_trl.py [--steps 10] [--warmup 2] [--threads 2] [--peers-keep-freed-memory]
                                      [--no-keep-freed-memory]

Prints s/step (wall and CPU) for each, reasoner / bare compute (target <= 1.25), and reasoner / TRL last (target
<= 0.6). On a machine busy with other work, `--threads 1 --cpu-time` compares CPU seconds instead.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPTS, GROUP, NEW_TOKENS, LR = 16, 8, 48, 1e-5
REASONER_OVERRIDES: list[str] = []      # extra `key=value` settings for reasoner's run (from the command line)


def build(work: Path, steps: int) -> tuple[Path, Path]:
    from reasoner.data.tasks import arithmetic
    from reasoner.models import TinyModelSpec, build_tiny_model

    rows = arithmetic(PROMPTS * (steps + 2), split="train", seed=0)
    spec = TinyModelSpec(vocab_size=1024, hidden_size=192, num_layers=6, num_heads=6, num_kv_heads=2, head_dim=32,
                         intermediate_size=512, seed=0)
    model = build_tiny_model(work / "model", [f"{r['problem']} {r['response']}" for r in rows] * 4, spec)
    data = work / "prompts.jsonl"
    data.write_text("".join(json.dumps({"id": r["id"], "problem": r["problem"], "answer": r["answer"]}) + "\n"
                            for r in rows))
    return model, data


class StepClock:
    """Wall and CPU seconds per step (CPU time is robust to other load on the machine; with one thread it is close
    to the wall time of a quiet machine)."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def start(self):
        self._w, self._c = time.perf_counter(), time.process_time()

    def stop(self):
        self.wall.append(time.perf_counter() - self._w)
        self.cpu.append(time.process_time() - self._c)

    def result(self, tokens: list[float]) -> dict:
        return {"step_s": self.wall, "cpu_s": self.cpu, "tokens": tokens}


def digit_fraction(text: str) -> float:
    return sum(ch.isdigit() for ch in text) / max(len(text), 1)


def register_digit_verifier() -> None:
    from reasoner_verifiers import Score, registry
    from reasoner_verifiers.types import Verifier

    class DigitFraction(Verifier):
        name = "digits"

        def score(self, completion, example):
            return Score(value=digit_fraction(completion), status="scored", details={})

    registry.register("digits", lambda options: DigitFraction())


def run_reasoner(model: Path, data: Path, steps: int, out: Path) -> dict:
    from reasoner.config import load_config
    from reasoner.training import TrainConfig
    from reasoner.training.grpo import run_step, setup

    cfg = load_config(TrainConfig, None, [
        f"model.path={model}", f"data.source={data}", f"out_dir={out}", f"steps={steps}",
        f"prompts_per_step={PROMPTS}", f"sampling.n={GROUP}", f"sampling.max_new_tokens={NEW_TOKENS}",
        f"optim.lr={LR}", "algorithm.kl_beta=0", "save_every=0", "log.report_to=[]", "log.progress=false",
        "log.plots=false", "log.sample_every=0",
        "reward.verifiers={math: {weight: 1.0}, format: {weight: 0.1}, digits: {weight: 1.0}}",
        *REASONER_OVERRIDES])
    register_digit_verifier()
    trainer = setup(cfg)
    clock, tokens = StepClock(), []
    for step in range(1, steps + 1):
        clock.start()
        metrics = run_step(trainer, step)
        clock.stop()
        tokens.append(metrics["length/mean"])
        assert metrics["skipped_rows"] == 0.0, "the benchmark must do the full update every step"
    trainer.reward_spec.close()
    return clock.result(tokens)


def run_trl(model: Path, data: Path, steps: int, out: Path) -> dict:
    import datasets
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from reasoner.models import load_tokenizer
    from reasoner_verifiers import RewardSpec
    from reasoner_verifiers.adapters import trl_reward_funcs

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    ds = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": r["problem"]}], "answer": r["answer"]}
                                     for r in rows])
    spec = RewardSpec.from_config({"math": {"weight": 1.0}, "format": {"weight": 0.1}})
    funcs, weights = trl_reward_funcs(spec)

    def digits(completions, **kwargs):
        return [digit_fraction(c[-1]["content"] if isinstance(c, list) else c) for c in completions]

    funcs, weights = funcs + [digits], weights + [1.0]
    clock, lengths = StepClock(), []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            clock.start()

        def on_step_end(self, args, state, control, **kw):
            clock.stop()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(logs["completions/mean_length"])

    args = GRPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, gradient_checkpointing=False,
        per_device_train_batch_size=PROMPTS * GROUP, gradient_accumulation_steps=1, num_generations=GROUP,
        max_completion_length=NEW_TOKENS, learning_rate=LR, beta=0.0, temperature=1.0, top_p=1.0,
        max_steps=steps, logging_steps=1, report_to="none", save_strategy="no", seed=0, reward_weights=weights,
        dataloader_num_workers=0)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model), reward_funcs=funcs, args=args,
                          train_dataset=ds, processing_class=load_tokenizer(str(model)), callbacks=[Timer()])
    trainer.train()
    spec.close()
    return clock.result(lengths)


def run_bare(model_dir: Path, data: Path, steps: int, out: Path) -> dict:
    import torch

    from reasoner.data import build_prompts
    from reasoner.models import ModelConfig, load_model, load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(ModelConfig(path=str(model_dir)))
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    prompts = build_prompts(tokenizer, rows)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    clock, lengths = StepClock(), []
    for step in range(steps):
        clock.start()
        batch = [p.text for p in prompts[step * PROMPTS:(step + 1) * PROMPTS] for _ in range(GROUP)]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        model.eval()
        with torch.no_grad():
            seqs = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                  max_new_tokens=NEW_TOKENS, pad_token_id=tokenizer.pad_token_id)
        model.train()
        prompt_width = enc["input_ids"].shape[1]
        attention = torch.ones_like(seqs)
        attention[:, :prompt_width] = enc["attention_mask"]
        width = seqs.shape[1] - prompt_width
        logits = model(input_ids=seqs, attention_mask=attention, logits_to_keep=width + 1).logits[:, :-1]
        loss = -torch.log_softmax(logits.float(), -1).gather(-1, seqs[:, -width:, None]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        clock.stop()
        lengths.append(float(width))
    return clock.result(lengths)


RUNNERS = {"reasoner": run_reasoner, "trl": run_trl, "bare": run_bare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=list(RUNNERS), action="append")
    parser.add_argument("--cpu-time", action="store_true",
                        help="compare CPU seconds per step instead of wall seconds (for a loaded machine; use "
                             "with --threads 1)")
    parser.add_argument("--peers-keep-freed-memory", action="store_true",
                        help="give TRL and the bare compute reasoner's allocator setting too "
                             "(reasoner.training.allocator), to see what the rest of the difference is")
    parser.add_argument("--no-keep-freed-memory", action="store_true",
                        help="run reasoner with keep_freed_memory=false (glibc's default allocator behaviour)")
    parser.add_argument("--_run", choices=list(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--_work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args._run:  # child process: one system
        import torch
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        if args.peers_keep_freed_memory and args._run != "reasoner":   # reasoner's trainer sets it itself
            from reasoner.training.allocator import keep_freed_memory
            assert keep_freed_memory(), "mallopt failed"
        if args.no_keep_freed_memory:
            REASONER_OVERRIDES.append("keep_freed_memory=false")
        work = Path(args._work)
        result = RUNNERS[args._run](work / "model", work / "prompts.jsonl", args.steps, work / args._run)
        print("RESULT " + json.dumps(result), flush=True)
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build(work, args.steps)
        results = {}
        for name in args.only or ["trl", "reasoner", "bare"]:
            proc = subprocess.run([sys.executable, __file__, "--_run", name, "--_work", str(work),
                                   "--steps", str(args.steps), "--threads", str(args.threads)]
                                  + (["--peers-keep-freed-memory"] if args.peers_keep_freed_memory else [])
                                  + (["--no-keep-freed-memory"] if args.no_keep_freed_memory else []),
                                  capture_output=True, text=True, cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
            data = json.loads(line[len("RESULT "):])
            wall = statistics.median(data["step_s"][args.warmup:] or data["step_s"])
            cpu = statistics.median(data["cpu_s"][args.warmup:] or data["cpu_s"])
            results[name] = cpu if args.cpu_time else wall
            tokens = statistics.fmean(data["tokens"]) if data["tokens"] else float("nan")
            print(f"{name:9s} {wall:.3f} s/step wall, {cpu:.3f} s/step CPU (medians after {args.warmup} warm-up "
                  f"steps; mean completion length {tokens:.1f} tokens)", flush=True)
    unit = "CPU seconds" if args.cpu_time else "wall seconds"
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other work on the machine skews wall times)")
    if "reasoner" in results and "bare" in results:
        print(f"reasoner / bare compute ({unit}): {results['reasoner'] / results['bare']:.2f}x  (target <= 1.25)")
    if "reasoner" in results and "trl" in results:
        print(f"reasoner / TRL GRPOTrainer ({unit}): {results['reasoner'] / results['trl']:.2f}x  (target <= 0.6)")


if __name__ == "__main__":
    main()
