"""Benchmark `token_logprobs` / `entropy_from_logits` against the naive form and TRL's helpers.

    python scripts/bench_logits.py [--n 8 --t 256 --v 32768 --repeats 3 --threads 1]
 Each (function, dtype) case runs in a fresh subprocess so that its peak memory
is its own: "extra peak" is the process's peak RSS (or CUDA peak allocation) during one call, minus what it held
just before (the logits and ids). Peers, measured in the same run: the naive `log_softmax(logits).gather(...)` /
`-(p * log p).sum()`, and TRL's `selective_log_softmax` / `entropy_from_logits` (when trl is installed). The
ratios are printed last. Times are the best of `--repeats`, as wall time and as this process's CPU time; on a
shared machine wall time is noisy (multi-threaded wall time very much so), so compare ratios from one run,
`--threads 1` CPU time being the steadiest.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from reasoner.algorithms.entropy import entropy_from_logits, token_logprobs


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _variant(name: str):
    """(callable(logits, ids) -> Tensor, needs_grad) for a case name."""
    if name == "ours_logprobs":
        return (lambda x, ids: token_logprobs(x, ids)), True
    if name == "naive_logprobs":
        return (lambda x, ids: torch.log_softmax(x.float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)), True
    if name == "trl_logprobs":
        from trl.trainer.utils import selective_log_softmax

        return (lambda x, ids: selective_log_softmax(x, ids)), True
    if name == "ours_entropy":
        return (lambda x, ids: entropy_from_logits(x)), False
    if name == "naive_entropy":
        def naive(x, ids):
            logp = torch.log_softmax(x.float(), -1)
            return -(logp.exp() * logp).sum(-1)

        return naive, False
    if name == "trl_entropy":
        from trl.trainer.utils import entropy_from_logits as trl_entropy

        return (lambda x, ids: trl_entropy(x)), False
    raise ValueError(f"unknown case {name!r}")


def run_case(name: str, dtype: str, n: int, t: int, v: int, repeats: int, device: str) -> dict:
    """One case, in this process: median seconds per call (forward, + backward for log-probs) and extra peak."""
    fn, needs_grad = _variant(name)
    gen = torch.Generator(device=device).manual_seed(0)
    # drawn in the target dtype: a float32 temporary would set the process's peak RSS before the measurement
    logits = torch.randn(n, t, v, generator=gen, device=device, dtype=getattr(torch, dtype))
    ids = torch.randint(0, v, (n, t), generator=gen, device=device)
    logits.requires_grad_(needs_grad)
    weights = torch.randn(n, t, device=device)

    def call() -> None:
        if needs_grad:
            (fn(logits, ids) * weights).sum().backward()
            logits.grad = None
        else:
            with torch.no_grad():
                fn(logits, ids)
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call()
        extra = torch.cuda.max_memory_allocated() - before
    else:
        before = _rss_bytes()
        call()
        extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"case": name, "dtype": dtype, "seconds": min(wall), "cpu_seconds": min(cpu), "extra_peak_mb": extra / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--t", type=int, default=256)
    parser.add_argument("--v", type=int, default=32768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_case(args.one[0], args.one[1], args.n, args.t, args.v, args.repeats, args.device)))
        return

    try:
        import trl  # noqa: F401

        peers = ["naive", "trl"]
    except ImportError:
        peers = ["naive"]
    logits_mb = args.n * args.t * args.v * 4 / 2**20
    print(f"logits [{args.n}, {args.t}, {args.v}] ({logits_mb:.0f} MiB as float32), device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    results = {}
    for dtype in args.dtypes.split(","):
        for kind in ("logprobs", "entropy"):
            for who in ["ours", *peers]:
                case = f"{who}_{kind}"
                cmd = [sys.executable, __file__, "--one", case, dtype,
                       "--n", str(args.n), "--t", str(args.t), "--v", str(args.v),
                       "--repeats", str(args.repeats), "--device", args.device, "--threads", str(args.threads)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                r = json.loads(out)
                results[(case, dtype)] = r
                what = "fwd+bwd" if kind == "logprobs" else "fwd, no grad"
                print(f"{case:16s} {dtype:9s} {what:13s} wall {r['seconds'] * 1e3:8.1f} ms  "
                      f"cpu {r['cpu_seconds'] * 1e3:8.1f} ms  extra peak {r['extra_peak_mb']:8.1f} MiB")
    print("ratios (ours / peer; < 1 is better for us):")
    for dtype in args.dtypes.split(","):
        for kind in ("logprobs", "entropy"):
            ours = results[(f"ours_{kind}", dtype)]
            for peer in peers:
                p = results[(f"{peer}_{kind}", dtype)]
                print(f"  {kind:8s} {dtype:9s} vs {peer:5s}: wall {ours['seconds'] / p['seconds']:.2f}x, "
                      f"cpu {ours['cpu_seconds'] / p['cpu_seconds']:.2f}x, "
                      f"extra peak memory {ours['extra_peak_mb'] / max(p['extra_peak_mb'], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
