"""Load examples from local files, `datasets` hub names, or built-in synthetic tasks — with row-level errors.

Every example comes back as a dict that keeps all of its fields and has `id`, `problem` and `answer` set from the
configured field names, which is what the verifiers read. A row missing a required field (or a file that is
not valid JSON Lines) raises one `DatasetError` naming the file, the line and the key.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoner.errors import ReasonerError


class DatasetError(ReasonerError, ValueError):
    """A dataset file or row is malformed; the message names the source, the row and the key."""


@dataclass
class DataConfig:
    source: str = "arithmetic"        # .jsonl/.json/.parquet, a save_to_disk folder, "hf:<name>[:<config>]", a task
    split: str = "train"              # for hub datasets and built-in tasks
    prompt_field: str = "problem"
    answer_field: str = "answer"
    id_field: str = "id"
    limit: int | None = None          # use only the first N examples
    num_examples: int = 2000          # built-in tasks: how many to generate
    seed: int = 0                     # built-in tasks: generator seed (train and test use disjoint streams)
    task_options: dict[str, Any] = field(default_factory=dict)  # built-in tasks: their own options

    def __post_init__(self):
        from reasoner.config import ConfigError
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 (or null for all examples), got {self.limit}")
        if self.num_examples < 1:
            raise ConfigError(f"data.num_examples must be >= 1, got {self.num_examples}")


def prompt_fields(value: Any, where: str) -> dict[str, Any]:
    """What a row's prompt field contributes to an example: `problem` (text), and for a conversational prompt
    (TRL's format: a list of `{"role", "content"}` messages) the messages too, which the chat template renders."""
    if isinstance(value, list):
        if not value or not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
            raise DatasetError(f"{where} must be text or a list of chat messages with 'role' and 'content'")
        users = [str(m["content"]) for m in value if m["role"] == "user"]
        if not users:
            raise DatasetError(f"{where}: the conversation has no user message")
        return {"problem": users[-1], "prompt_messages": [{"role": str(m["role"]), "content": str(m["content"])}
                                                          for m in value]}
    if isinstance(value, dict):
        raise DatasetError(f"{where} must be text or a list of chat messages, got a mapping")
    return {"problem": str(value)}


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
        example.update(prompt_fields(row[cfg.prompt_field], f"{where}: field '{cfg.prompt_field}'"))
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
        rows = tasks.make_task_rows(source, cfg.num_examples, split=cfg.split, seed=cfg.seed, **cfg.task_options)
        return [(f"row {i}", r) for i, r in enumerate(rows)], f"task '{source}' ({cfg.split})"
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"data source '{source}' is neither an existing file, an 'hf:' dataset name nor a "
                           f"built-in task ({', '.join(sorted(tasks.TASKS))})")
    if path.is_dir():
        return _read_saved(path, cfg.split), str(path)
    try:
        if path.suffix == ".parquet":
            import datasets
            ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
            return [(f"row {i}", r) for i, r in enumerate(ds)], str(path)
        if path.suffix == ".json":
            return _read_json(path), str(path)
        return _read_jsonl(path), str(path)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read it ({e.strerror or e})") from None


def _read_json(path: Path) -> list[tuple[str, Any]]:
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DatasetError(f"{path}, line {line}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of objects")
    return [(f"row {i}", r) for i, r in enumerate(data)]


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    rows = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DatasetError(f"{path}, line {lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                rows.append((f"line {lineno}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}, line {lineno}: invalid JSON: {e.msg}") from None
    return rows


def _read_saved(path: Path, split: str) -> list[tuple[str, Any]]:
    """A `datasets` `save_to_disk` folder: a Dataset, or a DatasetDict (then `split` picks one)."""
    import datasets
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise DatasetError(f"{path}: a folder, but not one written by datasets' save_to_disk ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DatasetError(f"{path}: no split '{split}' (splits: {', '.join(ds)}); set data.split")
        ds = ds[split]
    return [(f"row {i}", r) for i, r in enumerate(ds)]


def _read_hub(name: str, split: str) -> list[tuple[str, Any]]:
    import datasets
    dataset, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(dataset, config or None, split=split)
    except (ConnectionError, FileNotFoundError, ValueError, OSError) as e:
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local cache" if offline else \
            " ".join(str(e).split())[:300]
        raise DatasetError(f"hf:{name} (split {split}): cannot load it: {why}") from None
    return [(f"row {i}", r) for i, r in enumerate(ds)]
