"""Output-head cost at real shapes: fused log-probs from hidden states vs materialised logits; packed vs padded.

    python scripts/bench_head.py memory [--t 4096 --v 151936 --hidden 256 1024]
    python scripts/bench_head.py speed  [--t 1024 --v 151936 --hidden 512 --threads 2]
    python scripts/bench_head.py tokens [--sequences 64 --group 8]
    python scripts/bench_head.py model  [--group 4 --max-len 1024 --h 256]

memory: one training step of the head for one answer of T tokens (log-probs with gradient, entropy without, as
the trainer's update does), each case in a fresh subprocess. "extra" = the child's peak resident memory (VmHWM)
minus what it held before the step (hidden states, head weight, ids): the logits, their gradient and all
temporaries, plus the weight's gradient (V x H x 4 bytes, the same in every case). The parent also reports the
child's whole peak RSS, measured from outside (`wait4` rusage `ru_maxrss`). Cases: `fused`
(linear_token_logprobs), `materialised` (h @ W^T, then the current blockwise `token_logprobs` /
`entropy_from_logits`), `naive` (h @ W^T, then `log_softmax(...).gather`).

speed: wall time of forward + backward for the same step, fused with several block sizes and materialised.
Prints `uptime` first: the machine is shared, compare numbers from one run only.

model: one group (`--group` responses, lengths log-uniform 64..`--max-len`, one 200-token prompt) through a tiny
Qwen3 body (2 layers, hidden `--h`) with V = 151,936: the trainer's current `forward_logprobs` (padded,
materialised logits, shared-prompt KV cache) vs `packed_batch_logprobs` (packed, shared prompt, fused head),
forward + backward, each in a fresh subprocess: extra peak RSS and wall time.

tokens: processed tokens / real tokens for a long-tailed mix of `--sequences` rows (lengths log-uniform
64..4096, prompts 50..300, groups of `--group`): padded to the longest row; padded per micro-batch (the
token-budget plan's micro-batches, and the padded path's best case: rows sorted by length, `--group` per
micro-batch); packed; packed with shared prompts.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

import torch


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _step(case: str, hidden, weight, ids, adv, block_rows=None, block_vocab=None):
    from reasoner.algorithms import entropy_from_logits, linear_token_logprobs, token_logprobs
    if case == "fused":
        lp, ent = linear_token_logprobs(hidden, weight, ids, with_entropy=True, block_rows=block_rows,
                                        block_vocab=block_vocab)
    else:
        logits = hidden @ weight.t()  # [T, V]
        if case == "materialised":
            lp = token_logprobs(logits.unsqueeze(0), ids.unsqueeze(0))[0]
            with torch.no_grad():
                ent = entropy_from_logits(logits.detach().unsqueeze(0))[0]
        else:
            logp = torch.log_softmax(logits.float(), dim=-1)
            lp = logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
            with torch.no_grad():
                ent = -(logp.exp() * logp).sum(-1)
    (-(adv * lp).mean()).backward()
    return float(ent.mean())


def _make(t: int, v: int, h: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(t, h, generator=gen).to(dtype).requires_grad_(True)
    weight = (torch.randn(v, h, generator=gen) / math.sqrt(h)).to(dtype).requires_grad_(True)
    ids = torch.randint(0, v, (t,), generator=gen)
    adv = torch.randn(t, generator=gen)
    return hidden, weight, ids, adv


def child(args) -> None:
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    tensors = _make(args.t, args.v, args.h, dtype)
    base = _status("VmRSS")
    start = time.perf_counter()
    _step(args.case, *tensors)
    wall = time.perf_counter() - start
    print(json.dumps({"extra_bytes": _status("VmHWM") - base, "base_bytes": base, "wall_s": wall}))


def _model_child(args) -> None:
    from transformers import AutoModelForCausalLM, Qwen3Config

    from reasoner.rollout.base import Completion
    from reasoner.training.batch import Rollouts, collate
    from reasoner.training.logprobs import forward_logprobs
    from reasoner.training.packing import enable_packed_attention, packed_batch_logprobs
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=args.v, hidden_size=args.h, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=args.h // 4, intermediate_size=2 * args.h,
                         max_position_embeddings=8192, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    rng = random.Random(args.seed)
    lengths = [int(math.exp(rng.uniform(math.log(64), math.log(args.max_len)))) for _ in range(args.group)]
    comps = [Completion(token_ids=[rng.randrange(args.v) for _ in range(k)], logprobs=[0.0] * k,
                        finish_reason="stop") for k in lengths]
    prompt = [rng.randrange(args.v) for _ in range(200)]
    rollouts = Rollouts(prompt_ids=[prompt] * args.group, completions=comps, texts=[""] * args.group,
                        examples=[{}] * args.group, group_size=args.group)
    batch = collate(rollouts, torch.zeros(args.group), pad_id=0)
    if args.case == "packed":
        enable_packed_attention(model)
    base = _status("VmRSS")
    start = time.perf_counter()
    fn = packed_batch_logprobs if args.case == "packed" else forward_logprobs
    lp, _ = fn(model, batch, 1.0)
    (-(lp * batch.response_mask).sum() / batch.response_mask.sum()).backward()
    wall = time.perf_counter() - start
    print(json.dumps({"extra_bytes": _status("VmHWM") - base, "wall_s": wall, "lengths": lengths}))


def model_mode(args) -> None:
    print(f"# uptime: {os.popen('uptime').read().strip()}")
    print(f"# tiny Qwen3 body H={args.h}, V={args.v}, one group of {args.group}, lengths 64..{args.max_len}")
    for case in ["current", "packed"]:
        rc, stdout, stderr, maxrss = _run_child([
            sys.executable, __file__, "_model", "--case", case, "--v", str(args.v), "--h", str(args.h), "--group",
            str(args.group), "--max-len", str(args.max_len), "--threads", str(args.threads), "--seed", str(args.seed)])
        if rc:
            print(f"{case:>8}: failed rc={rc}: {stderr.strip()[-300:]}")
            continue
        r = json.loads(stdout.strip().splitlines()[-1])
        print(f"{case:>8}: extra peak {r['extra_bytes'] / 2**20:7.0f} MiB (process peak {maxrss / 2**20:6.0f} MiB), "
              f"{r['wall_s']:6.1f} s  (lengths {r['lengths']})")


def _run_child(cmd: list[str]) -> tuple[int, str, str, int]:
    """Run `cmd`; returns (rc, stdout, stderr, the child's peak RSS in bytes from `wait4`'s rusage)."""
    import tempfile
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), usage.ru_maxrss * 1024


def memory(args) -> None:
    print(f"# uptime: {os.popen('uptime').read().strip()}")
    print(f"# T={args.t} V={args.v} dtype={args.dtype}; extra = peak RSS - RSS before the step (MiB)")
    print(f"{'H':>5} {'case':>13} {'extra MiB':>10} {'ru_maxrss MiB':>14} {'wall s':>7} {'logits MiB':>11}")
    for h in args.hidden:
        for case in args.cases:
            rc, stdout, stderr, maxrss = _run_child([sys.executable, __file__, "_child", "--case", case, "--t",
                                                     str(args.t), "--v", str(args.v), "--h", str(h), "--dtype",
                                                     args.dtype, "--threads", str(args.threads)])
            if rc:
                print(f"{h:>5} {case:>13} failed rc={rc}: {stderr.strip()[-200:]}")
                continue
            r = json.loads(stdout.strip().splitlines()[-1])
            logits = args.t * args.v * 4 / 2**20
            print(f"{h:>5} {case:>13} {r['extra_bytes'] / 2**20:>10.0f} {maxrss / 2**20:>14.0f} {r['wall_s']:>7.1f} "
                  f"{logits:>11.0f}")


def speed(args) -> None:
    torch.set_num_threads(args.threads)
    print(f"# uptime: {os.popen('uptime').read().strip()}")
    print(f"# T={args.t} V={args.v} H={args.hidden[0]} threads={args.threads}; forward+backward, best of "
          f"{args.repeats} (wall time, and this process's CPU time)")
    tensors = _make(args.t, args.v, args.hidden[0], getattr(torch, args.dtype))
    cases = [("materialised", None, None)] + [("fused", r, v) for r in args.rows for v in args.vocab]
    for case, r, v in cases:
        best, best_cpu = math.inf, math.inf
        for _ in range(args.repeats):
            for x in tensors[:2]:
                x.grad = None
            start, start_cpu = time.perf_counter(), time.process_time()
            _step(case, *tensors, block_rows=r, block_vocab=v)
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - start_cpu)
        label = case if r is None else f"fused {r}x{v}"
        print(f"{label:>22} {best:7.2f} wall s {best_cpu:7.2f} cpu s")


def tokens(args) -> None:
    from reasoner.training.micro_batches import plan_micro_batches
    from reasoner.training.packing import pack_sequences
    rng = random.Random(args.seed)
    g, n = args.group, args.sequences
    lengths = [int(math.exp(rng.uniform(math.log(64), math.log(4096)))) for _ in range(n)]
    prompt_lens = [rng.randint(50, 300) for _ in range(n // g)]
    prompts = [[1] * prompt_lens[i // g] for i in range(n)]
    responses = [[2] * k for k in lengths]
    real = sum(len(p) for p in prompts) + sum(lengths)
    padded_all = n * (max(prompt_lens) + max(lengths))
    rows_len = [len(p) + k for p, k in zip(prompts, lengths)]
    plan = plan_micro_batches(rows_len, args.max_tokens)
    # a padded micro-batch costs rows x (widest prompt + longest response) of its rows
    padded_budget = sum(len(mb) * (max(len(prompts[i]) for i in mb) + max(lengths[i] for i in mb))
                        for mb in plan.ranks[0] if mb)
    by_length = sorted(range(n), key=lambda i: rows_len[i])
    padded_sorted = sum(len(mb) * (max(len(prompts[i]) for i in mb) + max(lengths[i] for i in mb))
                        for mb in (by_length[k:k + g] for k in range(0, n, g)))
    unshared = pack_sequences(prompts, responses).num_tokens
    shared = pack_sequences(prompts, responses, group_size=g, share_prompts=True).num_tokens
    print(f"# {n} rows, groups of {g}, responses log-uniform 64..4096 (mean {sum(lengths) / n:.0f}, max "
          f"{max(lengths)}), prompts 50..300; real tokens {real}")
    for name, count in [("padded (one batch)", padded_all),
                        (f"padded, {args.max_tokens}-token micro-batches", padded_budget),
                        (f"padded, sorted, {g} rows per micro-batch", padded_sorted),
                        ("packed", unshared), ("packed, shared prompts", shared)]:
        print(f"{name:>40}: {count:>8} processed, {count / real:.3f} x real")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["memory", "speed", "tokens", "model", "_child", "_model"])
    parser.add_argument("--t", type=int, default=None)
    parser.add_argument("--v", type=int, default=151936)
    parser.add_argument("--h", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", default="fused")
    parser.add_argument("--cases", nargs="+", default=["fused", "materialised", "naive"])
    parser.add_argument("--rows", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--vocab", type=int, nargs="+", default=[2048, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--group", type=int, default=None, help="tokens: 8, model: 4")
    parser.add_argument("--max-tokens", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-len", type=int, default=1024)
    args = parser.parse_args()
    if args.mode == "_model":
        _model_child(args)
        return
    if args.mode == "model":
        args.group = args.group or 4
        model_mode(args)
        return
    if args.mode == "_child":
        args.t = args.t or 4096
        child(args)
        return
    if args.mode == "memory":
        args.t, args.hidden = args.t or 4096, args.hidden or [256, 1024]
        memory(args)
    elif args.mode == "speed":
        args.t, args.hidden = args.t or 1024, args.hidden or [512]
        speed(args)
    else:
        args.group = args.group or 8
        tokens(args)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
