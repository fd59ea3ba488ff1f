"""`python -m reasoner_verifiers score`: round trip, malformed rows, other kinds."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "reasoner_verifiers", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, timeout=120)


def test_round_trip_keeps_fields_and_reports_bad_lines(tmp_path):
    rows = [
        {"id": 1, "answer": "\\frac{1}{2}", "completion": "so \\boxed{0.5}", "meta": {"k": [1, 2]}},
        {"id": 2, "answer": "3", "completion": "<answer>4</answer>"},
        "not json",
        {"id": 4, "completion": "no gold here"},
        {"id": 5, "answer": "x^2", "completion": "\\boxed{x\\cdot x}"},
        [1, 2],
        {"id": 7, "answer": "1", "completion": 7},
        {"id": 8, "answer": "1", "completion": "nothing"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n\n")
    out = tmp_path / "out.jsonl"
    res = run_cli("score", str(src), "--out", str(out), "--kind", "math", "--mode", "strict", "--deadline", "5",
                  "--workers", "1", "--extract", "auto")
    assert res.returncode == 1, res.stderr  # some rows were malformed
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == [1, 2, 5, 8]
    assert [(r["score"], r["status"]) for r in got] == [(1.0, "correct"), (0.0, "wrong"), (1.0, "correct"),
                                                        (0.0, "no_answer")]
    assert got[0]["meta"] == {"k": [1, 2]} and got[0]["completion"] == "so \\boxed{0.5}"
    err = res.stderr
    assert f"{src}:3: invalid JSON" in err
    assert f"{src}:4: missing field(s) answer" in err
    assert f"{src}:6: expected a JSON object" in err
    assert f"{src}:7: 'completion' must be a string" in err
    assert "scored 4 rows" in err and "4 malformed" in err


def test_clean_file_exits_zero_and_details_flag(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"answer": "2", "completion": "<answer>2</answer>"}) + "\n")
    res = run_cli("score", str(src), "--out", "-", "--details")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)
    assert row["status"] == "correct" and row["details"]["tier"] == "string"


def test_other_kinds_and_options(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"completion": "<think>我们</think><answer>1</answer>"}) + "\n")
    res = run_cli("score", str(src), "--out", "-", "--kind", "language", "--set", "target=zh")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["score"] == 1.0
    res = run_cli("score", str(src), "--out", "-", "--kind", "format", "--mode", "strict")
    assert res.returncode == 2 and "format: unknown option(s) 'mode'" in res.stderr
    res = run_cli("score", str(src), "--out", "-", "--kind", "nope")
    assert res.returncode == 2 and "unknown verifier 'nope'" in res.stderr


def test_list():
    res = run_cli("list")
    assert res.returncode == 0 and res.stdout.split() == ["code", "format", "format_partial", "language", "math"]


def test_one_poisoned_row_never_loses_the_others(tmp_path):
    """Issue 19: a superscript digit crashed the pre-filter and the whole run (exit 1, nothing written). Now the
    odd row is graded like any other, a null gold is named by its line, and every other row is written."""
    rows = [
        {"id": 1, "answer": "4", "completion": "\\boxed{4}"},
        {"id": 2, "answer": "512", "completion": "\\boxed{2^⁹}"},
        {"id": 3, "answer": None, "completion": "\\boxed{None}"},
        {"id": 4, "answer": "72", "completion": "Natalia sold 48+24 = 72 clips.\n#### 72"},
        {"id": 5, "answer": ["7"], "completion": "\\boxed{7}"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = run_cli("score", str(src), "--out", str(out), "--extract", "auto", "--workers", "1")
    assert res.returncode == 1, res.stderr
    got = {r["id"]: r["status"] for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert got == {1: "correct", 2: got[2], 4: "correct"} and got[2] in ("wrong", "parse_error")
    assert f"{src}:3: 'answer' must be a string or a number, got null" in res.stderr
    assert f"{src}:5: 'answer' must be a string or a number, got list" in res.stderr
    assert "Traceback" not in res.stderr


def test_rows_a_verifier_fails_on_are_named_and_the_rest_written(tmp_path, capsys):
    """The general rule, with a verifier that raises on one row and returns `error` on another."""
    from reasoner_verifiers import Score, cli, register
    from reasoner_verifiers.types import Verifier

    class Picky(Verifier):
        name = "picky_test"

        def score(self, completion, example):
            if completion == "raise":
                raise RuntimeError("cannot grade this")
            if completion == "error":
                return Score(0.0, "error", {"reason": "grader fault"})
            return Score(1.0, "correct")

    try:
        register("picky_test", lambda options: Picky())
    except ValueError:
        pass  # registered by an earlier run in this process
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"completion": c}) for c in ["ok", "raise", "error", "ok"]) + "\n")
    out = tmp_path / "out.jsonl"
    assert cli.main(["score", str(src), "--out", str(out), "--kind", "picky_test"]) == 1
    err = capsys.readouterr().err
    assert f"{src}:2: RuntimeError: cannot grade this" in err
    assert f"{src}:3: error while scoring: grader fault" in err
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["correct", "error", "correct"]
