"""scripts/gpu_check.py at toy size on CPU: every step runs (or says why it is skipped) and the update moves."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--smoke", "--out", str(out)],
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for name in ("environment", "model", "generation", "update_packed_fused", "update_reference"):
        assert report[name]["ok"] is True, (name, report[name])
    assert report["generation"]["tokens"] == 4 * 64
    assert report["update_packed_fused"]["path"] == [True, True] and report["update_reference"]["path"] == [False, False]
    assert report["update_packed_fused"]["param_change"] > 0
    assert report["update_zero3"]["ok"] in (True, None)  # ran, or skipped (no deepspeed), never failed
