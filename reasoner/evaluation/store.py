"""Per-sample JSONL that makes sampling resumable: `samples.jsonl` plus the `meta.json` it was sampled under.

Records are appended one chunk of complete problems at a time (all `n` samples of each problem in one write,
flushed and fsynced), so an interruption loses at most the chunk being sampled. On restart:
- a line cut short by the kill, and everything after it, is dropped (nothing after it is trustworthy);
- problems with all `n` samples are kept and not sampled again; partial ones are dropped and re-sampled;
- the file is rewritten with the kept problems only (atomically), so it never mixes old and new partial draws;
- `meta.json` (model, sampling settings, prompt format, graders, data) must equal the new run's: continuing
  under different settings would silently mix two experiments, so it is an error naming the keys that differ.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasoner.config import ConfigError
from reasoner.evaluation.core import SampleRecord

SAMPLES_FILE = "samples.jsonl"
META_FILE = "meta.json"


class SampleStore:
    def __init__(self, folder: str | Path, meta: dict[str, Any], n: int):
        self.folder = Path(folder)
        self.path = self.folder / SAMPLES_FILE
        self.meta = json.loads(json.dumps(meta))  # plain JSON types, as they will be read back
        self.n = n

    def open(self, resume: bool = True) -> dict[str, list[SampleRecord]]:
        """Prepare the folder; returns the complete problems already sampled (prompt id -> n records)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / META_FILE
        if not resume:
            self.path.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
        if self.path.exists() and not meta_path.exists():
            raise ConfigError(f"{self.path} exists without the {META_FILE} that says how it was sampled; move it "
                              f"away, or resume=false to start over")
        if meta_path.exists() and self.path.exists():
            old = json.loads(meta_path.read_text())
            if old != self.meta:
                differ = sorted(k for k in set(old) | set(self.meta) if old.get(k) != self.meta.get(k))
                raise ConfigError(f"{self.folder}: earlier samples were drawn with different settings "
                                  f"({', '.join(differ)}); use another out_dir, or resume=false to start over")
        done = self._read_complete()
        _atomic_write(meta_path, json.dumps(self.meta, indent=2))  # first: samples never exist without it
        _atomic_write(self.path, "".join(json.dumps(r.to_json()) + "\n" for recs in done.values() for r in recs))
        return done

    def append(self, records: Sequence[SampleRecord]) -> None:
        """Append complete problems (every problem in `records` must have all n samples)."""
        counts: dict[str, int] = {}
        for r in records:
            counts[r.prompt_id] = counts.get(r.prompt_id, 0) + 1
        partial = [pid for pid, c in counts.items() if c != self.n]
        if partial:
            raise ValueError(f"append needs all {self.n} samples of each problem; incomplete: {partial[:5]}")
        with self.path.open("a") as f:
            f.write("".join(json.dumps(r.to_json()) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())

    def _read_complete(self) -> dict[str, list[SampleRecord]]:
        groups: dict[str, dict[int, SampleRecord]] = {}
        if not self.path.exists():
            return {}
        with self.path.open() as f:
            for line in f:
                try:
                    record = SampleRecord.from_json(json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    break  # cut short by a kill: the rest is unreliable
                groups.setdefault(record.prompt_id, {})[record.sample_index] = record
        return {pid: [recs[i] for i in range(self.n)] for pid, recs in groups.items()
                if set(recs) == set(range(self.n))}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
