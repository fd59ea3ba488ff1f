"""Fixtures for the verifiers tests: shared math verifiers (one worker pool per mode per session)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasoner_verifiers import get_verifier

DATA = Path(__file__).resolve().parents[2] / "data" / "verifiers"


@pytest.fixture(scope="session")
def strict_math():
    v = get_verifier("math", mode="strict", extract="auto", deadline_s=2.0)
    yield v
    v.close()


@pytest.fixture(scope="session")
def lenient_math():
    v = get_verifier("math", mode="lenient", extract="auto", deadline_s=2.0)
    yield v
    v.close()


@pytest.fixture(scope="session")
def adversarial_rows() -> list[dict]:
    return load_adversarial()


def load_adversarial() -> list[dict]:
    rows = []
    for line in (DATA / "adversarial.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        row["completion"] = "".join(text * times for text, times in row["parts"])
        rows.append(row)
    return rows
