"""`reasoner distill --pairs`: graded samples -> preference pairs (chosen, rejected) for `reasoner dpo`.

Per prompt, over its graded samples (truncated ones dropped when `drop_truncated`, repeats when `dedup`), the
pair rule of `reasoner.algorithms.pair_indices` on the samples' rewards and lengths: `best_worst` (a verified
answer against a wrong one, the first of each by sample index: no length bias), `all` (every verified x wrong), or
`short_long` (Kimi k1.5's long2short: the shortest verified answer against the longest longer one). A prompt whose
samples are all right or all wrong has no contrast and gives no pair. Rows: `problem`, `chosen`, `rejected`, the
gold `answer` and `provenance` (both samples' indices, rewards, lengths and verdicts).
"""
from __future__ import annotations

import random
from collections import Counter
from statistics import fmean
from typing import Any

import torch

from reasoner.algorithms import pair_indices
from reasoner.distill.config import DistillConfig
from reasoner.distill.select import Candidate, dedupe


def select_pairs(cands: list[Candidate], cfg: DistillConfig) -> tuple[list[tuple[Candidate, Candidate]],
                                                                      dict[str, Any]]:
    """Pairs of candidates (chosen, rejected) and statistics of how they were formed."""
    rejected: Counter = Counter()
    kept = [c for c in cands if not (cfg.drop_truncated and c.truncated)]
    rejected["truncated"] = len(cands) - len(kept)
    if cfg.dedup:
        deduped = dedupe(kept)
        rejected.update(deduped.rejected)
        kept = deduped.kept
    prompt_ids = sorted({c.prompt_id for c in kept})
    if not kept:
        return [], {"prompts_with_pairs": 0, "pairs": 0, "removed": dict(rejected)}
    number = {p: i for i, p in enumerate(prompt_ids)}
    gen = torch.Generator().manual_seed(cfg.seed)
    idx = pair_indices(torch.tensor([c.reward for c in kept]), torch.tensor([c.num_tokens for c in kept]),
                       torch.tensor([number[c.prompt_id] for c in kept]), rule=cfg.pair_rule,
                       max_pairs_per_group=cfg.max_pairs_per_prompt, generator=gen)
    pairs = [(kept[int(a)], kept[int(b)]) for a, b in idx.tolist()]
    pairs = _cap(pairs, cfg.max_rows, random.Random(cfg.seed))
    stats = {"pair_rule": cfg.pair_rule, "prompts": len({c.prompt_id for c in cands}),
             "prompts_with_pairs": len({a.prompt_id for a, _ in pairs}), "pairs": len(pairs),
             "removed": dict(sorted(rejected.items())),
             "chosen_correct_rate": fmean(a.correct for a, _ in pairs) if pairs else None,
             "rejected_correct_rate": fmean(b.correct for _, b in pairs) if pairs else None,
             "mean_tokens_chosen": fmean(a.num_tokens for a, _ in pairs) if pairs else None,
             "mean_tokens_rejected": fmean(b.num_tokens for _, b in pairs) if pairs else None}
    return pairs, stats


def _cap(pairs: list, max_rows: int, rng: random.Random) -> list:
    if max_rows <= 0 or len(pairs) <= max_rows:
        return pairs
    keep = set(rng.sample(range(len(pairs)), max_rows))
    return [p for i, p in enumerate(pairs) if i in keep]


def pair_row(chosen: Candidate, rejected: Candidate, example: dict[str, Any], cfg: DistillConfig) -> dict[str, Any]:
    def side(c: Candidate) -> dict[str, Any]:
        return {"sample_index": c.sample_index, "score": c.reward, "correct": c.correct, "status": c.status,
                "num_tokens": c.num_tokens, "truncated": c.truncated}

    return {"id": f"{chosen.prompt_id}#{chosen.sample_index}>{rejected.sample_index}", "problem": example["problem"],
            "answer": example.get("answer"), "chosen": chosen.response, "rejected": rejected.response,
            "provenance": {"teacher": cfg.teacher.path, "prompt_id": chosen.prompt_id, "pair_rule": cfg.pair_rule,
                           "chosen": side(chosen), "rejected": side(rejected)}}


def format_pair_stats(stats: dict[str, Any]) -> str:
    def fmt(x):
        return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)

    return (f"pairs {stats['pairs']} ({stats['pair_rule']}) from {stats['prompts_with_pairs']} of {stats['prompts']} "
            f"prompts; chosen correct {fmt(stats['chosen_correct_rate'])}, rejected correct "
            f"{fmt(stats['rejected_correct_rate'])}; mean tokens chosen {fmt(stats['mean_tokens_chosen'])}, "
            f"rejected {fmt(stats['mean_tokens_rejected'])}; removed {stats['removed'] or 'none'}")


