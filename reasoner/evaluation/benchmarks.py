"""Benchmark presets and loading: names -> `BenchmarkConfig` -> examples with unique ids.

Math presets read the shared benchmark files (`{id, problem, answer, source}` rows) from
`$REASONER_SHARED_DATA/math/` or else `../shared/data/math/` next to the repository root; they are never copied
into the repository. `arithmetic` is the demo task's held-out split (disjoint from its training split), where a
tiny model's numbers mean something. Anything else is a path, an `hf:` dataset name or a built-in task, read by
`reasoner.data.load_examples`, so custom benchmarks get the same row-level errors as training data.

Code presets (`humaneval`, `mbpp`) read `<shared data>/code/` and grade with the `code` verifier, which runs the
completion's last ```python block in the `sandbox` package; their test specs are built by `sandbox.specs` (so the
HumanEval prompt helpers and MBPP entry points are handled the sandbox's way). The model must write the whole
function (the prompt asks for it), since the verifier runs the completion's code alone, not prompt + completion.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from reasoner.config import ConfigError, from_dict
from reasoner.data.datasets import DataConfig, DatasetError, load_examples
from reasoner.evaluation.config import BenchmarkConfig

REPO_ROOT = Path(__file__).resolve().parents[2]

# preset name -> file under <shared data>/math/
MATH_FILES = {
    "aime24": "aime24.jsonl",
    "aime25": "aime25.jsonl",
    "amc23": "amc23.jsonl",
    "math500": "math500.jsonl",
    "gsm8k_test": "gsm8k_test.jsonl",
    "gsm8k": "gsm8k_test.jsonl",
}
# preset name -> (file under <shared data>/code/, reader)
CODE_FILES = {"humaneval": "HumanEval.jsonl.gz", "mbpp": "sanitized-mbpp.json"}
CODE_VERIFIERS = {"code": {}}
# Grader options a math preset needs whatever the run's verifiers say (added where unset): GSM8K golds may be
# openai/gsm8k's worked solutions ending in `#### 72`.
MATH_PRESET_DEFAULTS = {"gsm8k": {"math": {"gold_format": "gsm8k"}}, "gsm8k_test": {"math": {"gold_format": "gsm8k"}}}
TASK_PRESETS = {"arithmetic": BenchmarkConfig(name="arithmetic", source="arithmetic", split="test",
                                              num_examples=200)}


def preset_names() -> list[str]:
    return sorted(MATH_FILES) + sorted(CODE_FILES) + sorted(TASK_PRESETS)


def shared_data_dir() -> Path:
    """`$REASONER_SHARED_DATA`, else `../shared/data` relative to the repository root."""
    env = os.environ.get("REASONER_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def resolve_benchmark(item: Any, index: int = 0) -> BenchmarkConfig:
    """A preset name, a path, or a mapping (`benchmarks[i]` in the config) -> a complete BenchmarkConfig."""
    where = f"benchmarks[{index}]"
    if isinstance(item, BenchmarkConfig):
        bench = item
    elif isinstance(item, str):
        if item in MATH_FILES or item in CODE_FILES or item in TASK_PRESETS or not _looks_like_source(item):
            bench = BenchmarkConfig(name=item)   # a preset (an unknown bare name fails below, listing them)
        else:
            bench = BenchmarkConfig(name=Path(item).stem, source=item)
    elif isinstance(item, dict):
        bench = from_dict(BenchmarkConfig, item, where=where)
    else:
        raise ConfigError(f"'{where}' must be a preset name, a path or a mapping; got {item!r}")
    if not bench.name and not bench.source:
        raise ConfigError(f"'{where}' needs a name (a preset: {', '.join(preset_names())}) or a source")
    if not bench.source:
        bench = _preset(bench, where)
    if not bench.name:
        bench = dataclasses.replace(bench, name=Path(bench.source).stem or f"benchmark{index}")
    return bench


def _looks_like_source(item: str) -> bool:
    from reasoner.data.tasks import TASKS
    return item.startswith("hf:") or item in TASKS or "/" in item or Path(item).suffix != "" or Path(item).exists()


def _preset(bench: BenchmarkConfig, where: str) -> BenchmarkConfig:
    if bench.name in TASK_PRESETS:
        preset = TASK_PRESETS[bench.name]
        return dataclasses.replace(bench, source=preset.source, split=preset.split)
    if bench.name in MATH_FILES or bench.name in CODE_FILES:
        kind, file = ("math", MATH_FILES[bench.name]) if bench.name in MATH_FILES else ("code", CODE_FILES[bench.name])
        path = shared_data_dir() / kind / file
        if not path.is_file():
            raise DatasetError(f"benchmark '{bench.name}': {path} not found; the {kind} presets read the shared "
                               f"benchmark data from $REASONER_SHARED_DATA/{kind} or ../shared/data/{kind} next to "
                               f"the repository (set REASONER_SHARED_DATA to its location)")
        if kind == "math":
            defaults = {**MATH_PRESET_DEFAULTS.get(bench.name, {}), **bench.verifier_defaults}
            return dataclasses.replace(bench, source=str(path), verifier_defaults=defaults)
        return dataclasses.replace(bench, source=f"{bench.name}:{path}", verifiers=bench.verifiers or CODE_VERIFIERS)
    raise ConfigError(f"'{where}': unknown benchmark preset '{bench.name}' and no source given; presets: "
                      f"{', '.join(preset_names())}")


def load_benchmark(bench: BenchmarkConfig, verifiers: dict[str, dict]) -> list[dict[str, Any]]:
    """The benchmark's examples (every field kept; `id`, `problem`, `answer` set); ids must be unique.

    A gold `answer` is required on every row when one of `verifiers` (the benchmark's resolved spec) is `math`.
    """
    if bench.source.split(":", 1)[0] in CODE_FILES:
        return _code_examples(bench)
    data = DataConfig(source=bench.source, split=bench.split, prompt_field=bench.prompt_field,
                      answer_field=bench.answer_field, id_field=bench.id_field, limit=bench.limit,
                      num_examples=bench.num_examples, seed=bench.seed, task_options=dict(bench.task_options))
    needs_answer = any((opts or {}).get("verifier", label) == "math" for label, opts in verifiers.items())
    examples = load_examples(data, require_answer=needs_answer)
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples):
        if ex["id"] in seen:
            raise DatasetError(f"benchmark '{bench.name}' ({bench.source}): id {ex['id']!r} appears at rows "
                               f"{seen[ex['id']]} and {i}; ids must be unique (set id_field)")
        seen[ex["id"]] = i
    return examples


HUMANEVAL_INSTRUCTION = ("Complete the following Python function. Write the whole function, signature included, "
                         "in one ```python code block.\n\n```python\n{prompt}```")
MBPP_INSTRUCTION = "{prompt}\nYour code should pass these tests:\n{tests}\nWrite the code in one ```python code block."


def _code_examples(bench: BenchmarkConfig) -> list[dict[str, Any]]:
    """HumanEval / MBPP rows as `{id, problem, tests}`, with sandbox test specs built by `sandbox.specs`."""
    import gzip
    import json

    try:
        from sandbox import specs
    except ImportError:
        raise DatasetError(f"benchmark '{bench.name}' grades code in the `sandbox` package, which is not "
                           f"importable here") from None
    name, path = bench.source.split(":", 1)
    where = f"benchmark '{name}' ({path})"
    try:
        if name == "humaneval":
            with gzip.open(path, "rt") as f:
                raw = [json.loads(line) for line in f if line.strip()]
            rows = [{"id": r["task_id"], "problem": HUMANEVAL_INSTRUCTION.format(prompt=r["prompt"]),
                     "tests": specs.humaneval(r, "")[1], "entry_point": r["entry_point"]} for r in raw]
        else:
            raw = json.loads(Path(path).read_text())
            rows = [{"id": str(r["task_id"]), "problem": MBPP_INSTRUCTION.format(
                prompt=r["prompt"], tests="\n".join(r["test_list"])), "tests": specs.mbpp(r, "")[1]} for r in raw]
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{where}: cannot read it: {type(e).__name__}: {e}") from None
    return rows[:bench.limit] if bench.limit is not None else rows
