"""Rejection-sampling distillation: filter, dedupe and selection rules; the `distill` run with a scripted teacher."""
from __future__ import annotations

import json
import random
import re

import pytest

from reasoner.config import ConfigError, load_config
from reasoner.distill import Candidate, DistillConfig, cap_rows, dedupe, distill, filter_candidates, select_per_prompt
from reasoner.distill import run as distill_run
from reasoner.rollout.base import Completion, RolloutEngine


def cand(pid, j, *, correct=True, tokens=10, truncated=False, fmt=True, response=None, status=None):
    return Candidate(prompt_id=pid, sample_index=j, response=response or f"{pid}-{j}", num_tokens=tokens,
                     correct=correct, truncated=truncated, format_ok=fmt,
                     status=status or ("correct" if correct else "wrong"))


def test_filter_counts_each_rejection_under_its_first_reason():
    cands = [cand("a", 0), cand("a", 1, correct=False), cand("a", 2, truncated=True),
             cand("a", 3, correct=False, status="no_answer"), cand("a", 4, fmt=False), cand("a", 5, fmt=None),
             cand("a", 6, correct=False, truncated=True)]
    verified = filter_candidates(cands)
    assert [c.sample_index for c in verified.kept] == [0, 4, 5]
    assert verified.rejected == {"wrong": 1, "truncated": 2, "no_answer": 1}
    formatted = filter_candidates(cands, require_format=True)
    assert [c.sample_index for c in formatted.kept] == [0]
    assert formatted.rejected["format"] == 2                    # False and unknown format both fail
    everything = filter_candidates(cands, accept="all", drop_truncated=False)
    assert len(everything.kept) == len(cands) and not everything.rejected
    with pytest.raises(ValueError, match="accept must be one of verified, all"):
        filter_candidates(cands, accept="some")


def test_dedupe_is_per_prompt_and_whitespace_insensitive():
    cands = [cand("a", 0, response="x  =\n1"), cand("a", 1, response="x = 1"), cand("b", 0, response="x = 1"),
             cand("a", 2, response="x = 2")]
    out = dedupe(cands)
    assert [(c.prompt_id, c.sample_index) for c in out.kept] == [("a", 0), ("b", 0), ("a", 2)]
    assert out.rejected == {"duplicate": 1}


def test_selection_rules():
    cands = [cand("a", 0, tokens=30), cand("a", 1, tokens=10), cand("a", 2, tokens=10), cand("b", 0, tokens=5),
             cand("b", 1, tokens=50)]
    rng = random.Random(0)
    assert [(c.prompt_id, c.sample_index) for c in select_per_prompt(cands, "shortest", rng)] == [("a", 1), ("b", 0)]
    assert len(select_per_prompt(cands, "all", rng)) == 5
    assert [c.sample_index for c in select_per_prompt(cands, "all", rng, max_per_prompt=1)] == [0, 0]
    picks = {tuple(c.sample_index for c in select_per_prompt(cands, "random", random.Random(s))) for s in range(30)}
    assert all(len(p) == 2 for p in picks) and len(picks) > 1   # one per prompt, and not always the same one
    assert select_per_prompt(cands, "random", random.Random(3)) == select_per_prompt(cands, "random", random.Random(3))
    capped = cap_rows(cands, 3, random.Random(0))
    assert len(capped) == 3 and capped == [c for c in cands if c in capped]    # order kept
    assert cap_rows(cands, 0, rng) == cands and cap_rows(cands, 9, rng) == cands
    with pytest.raises(ValueError, match="select must be one of"):
        select_per_prompt(cands, "longest", rng)


class TeacherScript(RolloutEngine):
    """Six completions per arithmetic prompt, one of each kind the filter must tell apart."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls = 0

    def completions(self, answer: int) -> list[tuple[str, str]]:
        return [
            (f"<think>\nfirst the ones, then the tens, then the rest\n</think>\n<answer>{answer}</answer>", "stop"),
            (f"<think>\nadd\n</think>\n<answer>{answer}</answer>", "stop"),                         # shortest
            (f"<think>\nadd\n</think>\n<answer>{answer + 1}</answer>", "stop"),                     # wrong
            (f"<answer>{answer}</answer>", "stop"),                                                 # no think
            (f"<think>\nadd\n</think>\n\n<answer>{answer}</answer>", "stop"),                       # duplicate
            (f"<think>\nadd\n</think>\n<answer>{answer}</answer> and more", "length"),              # truncated
        ]

    def generate(self, prompts, params):
        self.calls += 1
        out = []
        for ids in prompts:
            chain = re.search(r"What is ([\d +]+)\?", self.tokenizer.decode(ids)).group(1)
            answer = sum(int(t) for t in chain.split("+"))
            group = []
            for text, reason in self.completions(answer)[:params.n]:
                toks = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                toks = toks + ([self.tokenizer.eos_token_id] if reason == "stop" else [])
                group.append(Completion(toks, [0.0] * len(toks), reason))
            out.append(group)
        return out


@pytest.fixture
def scripted_teacher(monkeypatch, tokenizer):
    engines = []

    def build(*args):
        engines.append(TeacherScript(tokenizer))
        return engines[-1]

    monkeypatch.setattr(distill_run, "make_engine", build)
    return engines


def _cfg(model_dir, out, *extra):
    return load_config(DistillConfig, None, [f"teacher.path={model_dir}", f"out_dir={out}", "data.source=arithmetic",
                                             "data.num_examples=5", "sampling.n=6", "sampling.max_new_tokens=64",
                                             "progress=false", *extra])


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_distill_keeps_verified_formatted_traces_with_provenance(tmp_path, tiny_model_dir, scripted_teacher):
    result = distill(_cfg(tiny_model_dir, tmp_path, "require_format=true"))
    rows = _rows(result.output)
    assert len(rows) == 10 and {r["provenance"]["sample_index"] for r in rows} == {0, 1}  # 5 prompts x 2
    s = result.stats
    assert (s["prompts"], s["samples"], s["verified"], s["accepted"]) == (5, 30, 25, 10)
    assert s["rejected"] == {"duplicate": 5, "format": 5, "truncated": 5, "wrong": 5}
    row = rows[0]
    assert row["response"].startswith("<think>") and row["response"].endswith("</answer>")
    assert row["messages"] == [{"role": "user", "content": row["problem"]},
                               {"role": "assistant", "content": row["response"]}]
    p = row["provenance"]
    assert p["teacher"] == str(tiny_model_dir) and p["correct"] and p["format_ok"] and p["score"] == 1.0
    assert p["num_tokens"] > 0 and row["id"] == f"{p['prompt_id']}#{p['sample_index']}"
    assert json.loads((tmp_path / "sft.stats.json").read_text()) == s


def test_more_selections_reuse_the_teacher_samples(tmp_path, tiny_model_dir, scripted_teacher):
    distill(_cfg(tiny_model_dir, tmp_path))
    assert len(scripted_teacher) == 1 and scripted_teacher[0].calls == 1
    samples = (tmp_path / "samples.jsonl").read_text()
    short = distill(_cfg(tiny_model_dir, tmp_path, "select=shortest", "output=short.jsonl"))
    assert scripted_teacher[0].calls == 1 and len(scripted_teacher) == 1    # no new engine, no new samples
    assert (tmp_path / "samples.jsonl").read_text() == samples
    assert all(r["provenance"]["sample_index"] in (1, 3) for r in _rows(short.output))  # the shortest correct
    raw = distill(_cfg(tiny_model_dir, tmp_path, "accept=all", "drop_truncated=false", "dedup=false",
                       "select=random", "max_rows=3", "output=raw.jsonl"))
    assert raw.rows == 3 and raw.stats["accepted"] == 30 and len({r["problem"] for r in _rows(raw.output)}) == 3
    one = distill(_cfg(tiny_model_dir, tmp_path, "select=all", "max_per_prompt=1", "output=one.jsonl"))
    assert [r["provenance"]["sample_index"] for r in _rows(one.output)] == [0] * 5


def test_distilled_rows_train_a_student(tmp_path, tiny_model_dir, scripted_teacher):
    from reasoner.sft import SFTConfig, sft
    result = distill(_cfg(tiny_model_dir, tmp_path / "d", "require_format=true", "select=shortest"))
    cfg = load_config(SFTConfig, None, [f"model.path={tiny_model_dir}", f"out_dir={tmp_path / 's'}",
                                        f"data.source={result.output}", "row_format=prompt_response",
                                        "max_steps=2", "batch_size=4", "log.progress=false"])
    assert sft(cfg).final_model.is_dir()


def test_bad_settings_are_named(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="'select' must be one of all, shortest, random"):
        distill(_cfg(tiny_model_dir, tmp_path, "select=longest"))
    with pytest.raises(ConfigError, match="'output' must be a file name ending in .jsonl"):
        distill(_cfg(tiny_model_dir, tmp_path, "output=../x.jsonl"))


def test_pairs_verified_against_wrong_feed_dpo(tmp_path, tiny_model_dir, scripted_teacher):
    result = distill(_cfg(tiny_model_dir, tmp_path, "pairs=true", "output=pairs.jsonl"))
    rows = _rows(result.output)
    # per prompt: the truncated sample is dropped, the duplicate too; best = the first verified answer (sample 0),
    # worst = the only wrong one (sample 2)
    assert len(rows) == 5 and result.stats["prompts_with_pairs"] == 5
    assert result.stats["removed"] == {"duplicate": 5, "truncated": 5}
    for r in rows:
        p = r["provenance"]
        assert (p["chosen"]["sample_index"], p["rejected"]["sample_index"]) == (0, 2)
        assert p["chosen"]["correct"] and not p["rejected"]["correct"] and r["chosen"] != r["rejected"]
    every = distill(_cfg(tiny_model_dir, tmp_path, "pairs=true", "pair_rule=all", "output=all.jsonl"))
    assert every.rows == 15            # 3 verified (0, 1, 3) x 1 wrong per prompt
    from reasoner.dpo import DPOConfig, dpo
    cfg = load_config(DPOConfig, None, [f"model.path={tiny_model_dir}", f"out_dir={tmp_path / 'dpo'}",
                                        f"data.source={every.output}", "max_steps=2", "batch_size=4",
                                        "progress=false"])
    assert dpo(cfg).final_model.is_dir()
    with pytest.raises(ConfigError, match="'pair_rule' must be one of best_worst, all, short_long"):
        distill(_cfg(tiny_model_dir, tmp_path, "pairs=true", "pair_rule=random"))
