"""`python -m sandbox run`: rows in, rows out in order; malformed rows named by line, the rest still run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cli_runs_rows_and_reports_bad_lines(tmp_path):
    rows = [
        {"id": "ok", "code": "def add(a, b):\n    return a + b\n",
         "tests": {"kind": "assert", "source": "assert add(1, 2) == 3\n"}},
        "this line is not json",
        {"id": "bad-kind", "code": "x = 1", "tests": {"kind": "shell"}},
        {"id": "io", "code": "print(int(input()) * 2)", "tests": {"kind": "stdio",
                                                                  "cases": [{"input": "4\n", "output": "9\n"}]}},
        {"id": "no-code", "tests": {"kind": "assert", "source": "pass"}},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "sandbox", "run", str(src), "--out", str(out), "--workers", "2",
                           "--timeout", "5"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g.get("id") for g in got] == ["ok", None, "bad-kind", "io", "no-code"]
    assert got[0]["status"] == "passed" and got[0]["code"].startswith("def add")
    assert got[1]["error"].startswith("line 2: invalid JSON")
    assert got[2]["error"] == "line 3: tests.kind must be one of assert, call, stdio, got 'shell'"
    assert got[3]["status"] == "failed" and got[3]["stdout"] == "8\n" and got[3]["fraction"] == 0.0
    assert got[4]["error"] == "line 5: missing key 'code'"
    assert "line 2: invalid JSON" in proc.stderr and "2 rows" in proc.stderr
