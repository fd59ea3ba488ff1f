"""`reasoner distill`: rejection sampling from a teacher into SFT data (DeepSeek-R1's distillation recipe).

1. Sample n completions per prompt from the teacher and grade them with the training verifiers, through the same
   resumable `sample_and_grade` as `reasoner eval` (`<out_dir>/samples.jsonl`; drawn once, however many
   selections are later made from them).
2. Filter, deduplicate and select (`reasoner.distill.select`).
3. Write SFT JSONL rows: `problem` and `response` (the teacher's completion, kept in its R1
   `<think>…</think><answer>…</answer>` form), `messages` (the same pair as a chat, for other trainers), the gold
   `answer`, and `provenance` (teacher, prompt id, sample index, score, length, verdicts, selection rule).
4. Write and print acceptance statistics (`<output stem>.stats.json`).
With `pairs` (`reasoner distill --pairs`), step 2-3 form preference pairs instead (`reasoner.distill.pairs`).
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import torch

from reasoner.config import ConfigError, save_config, to_dict
from reasoner.data import build_prompts, load_examples
from reasoner.distill.config import DistillConfig
from reasoner.distill.pairs import pair_row, select_pairs
from reasoner.distill.select import ACCEPT, SELECT, Candidate, cap_rows, dedupe, filter_candidates, select_per_prompt
from reasoner.evaluation.core import SampleRecord
from reasoner.evaluation.runner import LazyEngine, sample_and_grade
from reasoner.evaluation.store import SampleStore
from reasoner.rollout import make_engine
from reasoner.training.rewards import reward_spec_for


@dataclass
class DistillResult:
    out_dir: Path
    output: Path
    rows: int
    stats: dict[str, Any]


def distill(cfg: DistillConfig) -> DistillResult:
    from reasoner.models import load_model, tokenizer_for

    _check(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    output = out / cfg.output
    save_config(cfg, output.with_suffix(".config.yaml"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    examples = load_examples(cfg.data)
    tokenizer = tokenizer_for(cfg.teacher)
    prompts = build_prompts(tokenizer, examples, cfg.prompt)
    params = cfg.sampling.params_for(tokenizer)
    verifiers = grading_verifiers(cfg.verifiers)
    store = SampleStore(out, _meta(cfg, verifiers), params.n)
    engine = LazyEngine(lambda: make_engine(cfg.engine, load_model(cfg.teacher, trainable=False), tokenizer))
    spec = reward_spec_for(verifiers, "verifiers")
    try:
        records = sample_and_grade(engine, tokenizer, prompts, spec, params, store, resume=cfg.resume,
                                   chunk_problems=cfg.chunk_problems, seed=cfg.seed,
                                   progress=cfg.progress, desc="distill")
    finally:
        spec.close()
        engine.close()
    by_id = {p.id: p for p in prompts}
    if cfg.pairs:
        pairs, stats = select_pairs(to_candidates(records, spec.primary), cfg)
        rows = [pair_row(a, b, by_id[a.prompt_id].example, cfg) for a, b in pairs]
    else:
        chosen, stats = select_samples(records, cfg, primary=spec.primary)
        rows = [sft_row(c, by_id[c.prompt_id].example, cfg) for c in chosen]
    output.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    output.with_suffix(".stats.json").write_text(json.dumps(stats, indent=2))
    return DistillResult(out_dir=out, output=output, rows=len(rows), stats=stats)


def grading_verifiers(verifiers: dict[str, dict]) -> dict[str, dict]:
    """The configured graders plus a zero-weight `format` verifier when none is listed."""
    has_format = any((opts or {}).get("verifier", label) in ("format", "format_partial")
                     for label, opts in verifiers.items())
    return dict(verifiers) if has_format else {**verifiers, "format": {"weight": 0.0}}


def to_candidates(records: list[SampleRecord], primary: str | None) -> list[Candidate]:
    out = []
    for r in records:
        fmt = next((s for label, s in r.statuses.items() if label.startswith("format")), None)
        out.append(Candidate(prompt_id=r.prompt_id, sample_index=r.sample_index, response=r.completion,
                             num_tokens=r.num_tokens, correct=r.correct, truncated=r.finish_reason == "length",
                             format_ok=None if fmt is None else fmt == "correct",
                             status=r.statuses.get(primary, "") if primary else "", reward=r.reward))
    return out


def select_samples(records: list[SampleRecord], cfg: DistillConfig,
                   primary: str | None) -> tuple[list[Candidate], dict[str, Any]]:
    """Filter -> dedupe -> select -> cap, with the statistics of each stage."""
    rng = random.Random(cfg.seed)
    cands = to_candidates(records, primary)
    filtered = filter_candidates(cands, accept=cfg.accept, require_format=cfg.require_format,
                                 drop_truncated=cfg.drop_truncated)
    rejected = Counter(filtered.rejected)
    kept = filtered.kept
    if cfg.dedup:
        deduped = dedupe(kept)
        rejected.update(deduped.rejected)
        kept = deduped.kept
    chosen = cap_rows(select_per_prompt(kept, cfg.select, rng, cfg.max_per_prompt), cfg.max_rows, rng)
    prompts = {c.prompt_id for c in cands}
    stats = {
        "teacher": cfg.teacher.path, "prompts": len(prompts), "samples": len(cands),
        "samples_per_prompt": len(cands) // max(1, len(prompts)),
        "verified": sum(c.correct for c in cands), "verified_rate": fmean(c.correct for c in cands),
        "format_rate": _rate([c.format_ok for c in cands]),
        "truncated_rate": fmean(c.truncated for c in cands),
        "prompts_with_verified": len({c.prompt_id for c in cands if c.correct}),
        "accepted": len(kept), "acceptance_rate": len(kept) / len(cands),
        "rejected": dict(sorted(rejected.items())),
        "rows": len(chosen), "prompts_in_rows": len({c.prompt_id for c in chosen}),
        "rows_correct_rate": fmean(c.correct for c in chosen) if chosen else None,
        "mean_tokens_all": fmean(c.num_tokens for c in cands),
        "mean_tokens_rows": fmean(c.num_tokens for c in chosen) if chosen else None,
        "accept": cfg.accept, "select": cfg.select, "require_format": cfg.require_format,
    }
    return chosen, stats


def sft_row(c: Candidate, example: dict[str, Any], cfg: DistillConfig) -> dict[str, Any]:
    user = f"{example['problem']}{cfg.prompt.instruction}"
    messages = ([{"role": "system", "content": cfg.prompt.system_prompt}] if cfg.prompt.system_prompt else []) + \
        [{"role": "user", "content": user}, {"role": "assistant", "content": c.response}]
    return {
        "id": f"{c.prompt_id}#{c.sample_index}", "problem": example["problem"], "answer": example.get("answer"),
        "response": c.response, "messages": messages,
        "provenance": {"teacher": cfg.teacher.path, "prompt_id": c.prompt_id, "sample_index": c.sample_index,
                       "score": c.reward, "correct": c.correct, "format_ok": c.format_ok,
                       "num_tokens": c.num_tokens, "truncated": c.truncated, "status": c.status,
                       "accept": cfg.accept, "select": cfg.select},
    }


def format_stats(stats: dict[str, Any]) -> str:
    rej = ", ".join(f"{k} {v}" for k, v in stats["rejected"].items()) or "none"
    fmt = f"{stats['format_rate']:.3f}" if stats["format_rate"] is not None else "n/a"
    return "\n".join([
        f"prompts {stats['prompts']} x {stats['samples_per_prompt']} samples = {stats['samples']}",
        f"verified {stats['verified']} ({stats['verified_rate']:.3f}); format {fmt}; truncated "
        f"{stats['truncated_rate']:.3f}; prompts with a verified sample {stats['prompts_with_verified']}",
        f"accepted {stats['accepted']} ({stats['acceptance_rate']:.3f}); rejected: {rej}",
        f"rows written {stats['rows']} from {stats['prompts_in_rows']} prompts (select={stats['select']}); "
        f"mean tokens {stats['mean_tokens_rows'] or 0:.1f} (all samples {stats['mean_tokens_all']:.1f})",
    ])


def _rate(flags: list[bool | None]) -> float | None:
    known = [f for f in flags if f is not None]
    return fmean(known) if known else None


def _check(cfg: DistillConfig) -> None:
    if cfg.accept not in ACCEPT:
        raise ConfigError(f"'accept' must be one of {', '.join(ACCEPT)}; got '{cfg.accept}'")
    from reasoner.algorithms import PAIR_RULES
    if cfg.pair_rule not in PAIR_RULES:
        raise ConfigError(f"'pair_rule' must be one of {', '.join(PAIR_RULES)}; got '{cfg.pair_rule}'")
    if cfg.select not in SELECT:
        raise ConfigError(f"'select' must be one of {', '.join(SELECT)}; got '{cfg.select}'")
    if not cfg.teacher.path:
        raise ConfigError("'teacher.path' is empty: give the teacher model's path or hub id")
    if Path(cfg.output).name != cfg.output or not cfg.output.endswith(".jsonl"):
        raise ConfigError(f"'output' must be a file name ending in .jsonl (written in out_dir); got '{cfg.output}'")


def _meta(cfg: DistillConfig, verifiers: dict) -> dict:
    return {"teacher": cfg.teacher.path, "tokenizer": cfg.teacher.tokenizer, "dtype": cfg.teacher.dtype,
            "sampling": {**cfg.sampling.resolve(), "stop_strings": list(cfg.sampling.stop_strings)},
            "data": to_dict(cfg.data), "prompt": to_dict(cfg.prompt), "verifiers": verifiers}
