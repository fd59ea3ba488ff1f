"""Load examples from local files, `datasets` hub names, or built-in synthetic tasks — with row-level errors.

Every example comes back as a dict that keeps all of its fields and has `id`, `problem` and `answer` set from the
configured field names, which is what the verifiers read. A row missing a required field (or a file that is
not valid JSON Lines) raises one `DatasetError` naming the file, the line and the key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DatasetError(ValueError):
    """A dataset file or row is malformed; the message names the source, the row and the key."""


@dataclass
class DataConfig:
    source: str = "arithmetic"        # a .jsonl/.json/.parquet path, "hf:<name>[:<config>]", or a built-in task
    split: str = "train"              # for hub datasets and built-in tasks
    prompt_field: str = "problem"
    answer_field: str = "answer"
    id_field: str = "id"
    template: str = "chat"            # chat | r1 | raw (reasoner.data.templates)
    system_prompt: str | None = None
    instruction: str = ""             # appended to each problem
    max_prompt_tokens: int = 1024
    limit: int | None = None          # use only the first N examples
    num_examples: int = 2000          # built-in tasks: how many to generate
    seed: int = 0                     # built-in tasks: generator seed (train and test use disjoint streams)


def load_examples(cfg: DataConfig, *, require_answer: bool = True) -> list[dict[str, Any]]:
    rows, origin = _read_rows(cfg)
    examples = []
    for index, row in rows:
        where = f"{origin}, {index}"
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected an object, got {type(row).__name__}")
        for key in [cfg.prompt_field] + ([cfg.answer_field] if require_answer else []):
            if key not in row or row[key] is None:
                raise DatasetError(f"{where}: missing required field '{key}' (fields present: "
                                   f"{', '.join(sorted(row)) or 'none'})")
        example = dict(row)
        example["id"] = str(row.get(cfg.id_field, index))
        example["problem"] = str(row[cfg.prompt_field])
        if cfg.answer_field in row:
            example["answer"] = str(row[cfg.answer_field])
        examples.append(example)
        if cfg.limit is not None and len(examples) >= cfg.limit:
            break
    if not examples:
        raise DatasetError(f"{origin}: no examples")
    return examples


def _read_rows(cfg: DataConfig) -> tuple[list[tuple[str, Any]], str]:
    source = cfg.source
    if source.startswith("hf:"):
        return _read_hub(source[3:], cfg.split), source
    from reasoner.data import tasks
    if source in tasks.TASKS:
        rows = tasks.TASKS[source](cfg.num_examples, split=cfg.split, seed=cfg.seed)
        return [(f"row {i}", r) for i, r in enumerate(rows)], f"task '{source}' ({cfg.split})"
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"data source '{source}' is neither an existing file, an 'hf:' dataset name nor a "
                           f"built-in task ({', '.join(sorted(tasks.TASKS))})")
    if path.suffix == ".parquet":
        import datasets
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
        return [(f"row {i}", r) for i, r in enumerate(ds)], str(path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}: invalid JSON: {e}") from None
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a JSON list of objects")
        return [(f"row {i}", r) for i, r in enumerate(data)], str(path)
    return _read_jsonl(path), str(path)


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    rows = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append((f"line {lineno}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}, line {lineno}: invalid JSON: {e.msg}") from None
    return rows


def _read_hub(name: str, split: str) -> list[tuple[str, Any]]:
    import datasets
    dataset, _, config = name.partition(":")
    ds = datasets.load_dataset(dataset, config or None, split=split)
    return [(f"row {i}", r) for i, r in enumerate(ds)]
