"""`reasoner eval`: one model, several benchmarks, n graded samples per problem, resumable.

Reads top to bottom: resolve and load every benchmark (a bad file fails before the model loads), load the model
and an engine, then per benchmark sample-and-grade the problems not yet in its `samples.jsonl`, aggregate, and
write `results.json`, `results.md` and the plots. `sample_and_grade` is also what distillation samples with.

Sampling is seeded per chunk of problems from the run seed and the chunk's first problem id, so a run is
reproducible; a resumed run draws the re-sampled problems afresh (the same distribution, not the same tokens).
"""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from reasoner.config import ConfigError, from_dict, save_config, to_dict
from reasoner.data import build_prompts
from reasoner.data.datasets import DatasetError
from reasoner.data.templates import Prompt, PromptConfig
from reasoner.evaluation.aggregate import BenchmarkMetrics, compute_metrics
from reasoner.evaluation.benchmarks import load_benchmark, resolve_benchmark
from reasoner.evaluation.config import BenchmarkConfig, EvalConfig
from reasoner.evaluation.core import SampleRecord, evaluate_prompts
from reasoner.evaluation.hooks import SAMPLE_METRICS
from reasoner.evaluation.report import plot_results, write_markdown, write_results
from reasoner.evaluation.store import SampleStore
from reasoner.metrics.progress import progress_bar
from reasoner.rollout import RolloutEngine, SamplingParams, make_engine
from reasoner.training.rewards import reward_spec_for


@dataclass
class EvalResult:
    out_dir: Path
    metrics: list[BenchmarkMetrics]
    records: dict[str, list[SampleRecord]]
    results_path: Path
    markdown_path: Path


def run_eval(cfg: EvalConfig) -> EvalResult:
    from reasoner.models import load_model, tokenizer_for

    benches = resolve_benchmarks(cfg.benchmarks)  # a bad benchmark fails before anything is written
    for bench in benches:  # and so does a bad grader
        reward_spec_for(verifiers_for(bench, cfg), f"benchmark '{bench.name}' verifiers").close()
    examples = {b.name: load_benchmark(b, verifiers_for(b, cfg)) for b in benches}
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    tokenizer = tokenizer_for(cfg.model)
    engine = LazyEngine(lambda: make_engine(cfg.engine, load_model(cfg.model, trainable=False), tokenizer))
    params = cfg.sampling.params_for(tokenizer)
    skipped = sorted(k for k in cfg.ks if k > params.n)
    if skipped:
        print(f"[eval] ks {skipped} are more than the {params.n} samples per problem (sampling.n): not reported")
    metrics, records = [], {}
    try:
        for bench in benches:
            prompts = bench_prompts(tokenizer, bench, examples[bench.name], cfg)
            store = SampleStore(out / bench.name, _meta(cfg, bench), params.n)
            records[bench.name], primary = grade_benchmark(engine, tokenizer, prompts, verifiers_for(bench, cfg),
                                                           params, store, cfg, desc=bench.name)
            metrics.append(compute_metrics(bench.name, records[bench.name], cfg.ks, primary=primary,
                                           n_boot=cfg.bootstrap, seed=cfg.seed, hooks=bench.metrics))
    finally:
        engine.close()
    header = {"model": cfg.model.path, "sampling": {**cfg.sampling.resolve(), "seed": cfg.seed}}
    plots = plot_results(out, metrics, records) if cfg.plots else []
    return EvalResult(out_dir=out, metrics=metrics, records=records, results_path=write_results(out, header, metrics),
                      markdown_path=write_markdown(out, header, metrics, plots))


def resolve_benchmarks(items: Sequence) -> list[BenchmarkConfig]:
    if not items:
        raise ConfigError("'benchmarks' is empty: name at least one (a preset, a path or a mapping)")
    benches = [resolve_benchmark(item, i) for i, item in enumerate(items)]
    for i, bench in enumerate(benches):
        unknown = [m for m in bench.metrics if m not in SAMPLE_METRICS]
        if unknown:
            raise ConfigError(f"benchmarks[{i}].metrics: unknown metric {unknown[0]!r}; valid: "
                              f"{', '.join(SAMPLE_METRICS.names())}")
    names = [b.name for b in benches]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"benchmark names must be unique (each gets its own folder); repeated: "
                          f"{', '.join(duplicates)}")
    return benches


def verifiers_for(bench: BenchmarkConfig, cfg: EvalConfig) -> dict[str, dict]:
    """The benchmark's graders (its own, else the run's), with its `verifier_defaults` added where unset."""
    graders = bench.verifiers if bench.verifiers is not None else cfg.verifiers
    out = {label: dict(opts or {}) for label, opts in graders.items()}
    for label, defaults in bench.verifier_defaults.items():
        if label in out:
            out[label] = {**defaults, **out[label]}
    return out


def prompt_for(bench: BenchmarkConfig, cfg: EvalConfig) -> PromptConfig:
    """The run's `prompt` section with the benchmark's own overrides on top."""
    return from_dict(PromptConfig, {**to_dict(cfg.prompt), **bench.prompt}, where=f"benchmark '{bench.name}' prompt")


def bench_prompts(tokenizer, bench: BenchmarkConfig, examples: list[dict], cfg: EvalConfig) -> list[Prompt]:
    try:
        return build_prompts(tokenizer, examples, prompt_for(bench, cfg))
    except ValueError as e:
        raise DatasetError(f"benchmark '{bench.name}': {e}") from None


def grade_benchmark(engine, tokenizer, prompts, verifiers: dict, params: SamplingParams, store: SampleStore,
                    cfg: EvalConfig, desc: str) -> tuple[list[SampleRecord], str | None]:
    spec = reward_spec_for(verifiers, "verifiers")
    try:
        records = sample_and_grade(engine, tokenizer, prompts, spec, params, store, resume=cfg.resume,
                                   chunk_problems=cfg.chunk_problems, seed=cfg.seed,
                                   progress=cfg.progress, desc=desc)
    finally:
        spec.close()
    return records, spec.primary


def sample_and_grade(engine: RolloutEngine, tokenizer, prompts: Sequence[Prompt], spec, params: SamplingParams,
                     store: SampleStore, *, resume: bool = True, chunk_problems: int = 16, seed: int = 0,
                     progress: bool = False, desc: str = "eval") -> list[SampleRecord]:
    """n graded samples for every prompt, skipping problems `store` already holds; records in prompt order."""
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError(f"{desc}: problem id {dup!r} appears more than once; ids must be unique")
    done = store.open(resume)
    # Longest first, so similar lengths share a batch (less left padding; a benchmark like MATH-500 spans 30 to
    # 1,700 prompt tokens) and an out-of-memory error, if any, comes in the first chunk.
    pending = sorted((p for p in prompts if p.id not in done), key=lambda p: -len(p.token_ids))
    bar = progress_bar(progress, total=len(prompts), initial=len(prompts) - len(pending), desc=desc, unit="problem")
    for start in range(0, len(pending), max(1, chunk_problems)):
        chunk = pending[start:start + max(1, chunk_problems)]
        torch.manual_seed(zlib.crc32(f"{seed}:{chunk[0].id}".encode()))
        records = evaluate_prompts(engine, tokenizer, chunk, spec, params, batch_prompts=len(chunk))
        store.append(records)
        for r in records:
            done.setdefault(r.prompt_id, []).append(r)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return [r for p in prompts for r in done[p.id]]


class LazyEngine(RolloutEngine):
    """Builds the real engine (and loads the model) on first use: a finished eval re-run only re-aggregates."""

    def __init__(self, factory: Callable[[], RolloutEngine]):
        self._factory = factory
        self._engine: RolloutEngine | None = None

    def generate(self, prompts, params):
        if self._engine is None:
            self._engine = self._factory()
        return self._engine.generate(prompts, params)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def _meta(cfg: EvalConfig, bench: BenchmarkConfig) -> dict:
    """What the samples depend on: resuming under any other value is refused (see store.py)."""
    prompt = prompt_for(bench, cfg)
    return {"model": cfg.model.path, "tokenizer": cfg.model.tokenizer, "dtype": cfg.model.dtype,
            "sampling": {**cfg.sampling.resolve(), "stop_strings": list(cfg.sampling.stop_strings)},
            "benchmark": {k: v for k, v in dataclasses.asdict(bench).items() if k not in ("verifiers", "prompt")},
            "prompt": {"template": prompt.template, "system_prompt": prompt.system_prompt,
                       "instruction": prompt.instruction},
            "verifiers": verifiers_for(bench, cfg)}
