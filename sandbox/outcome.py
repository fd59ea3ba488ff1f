"""From raw execution records to statuses and verdicts.

Order of precedence (the first that applies): a sandbox fault (retried by the caller, then `sandbox_error`),
`timeout` (deadline or CPU limit), `output_limit`, `passed` (every test passed), `memory` (address-space
limit hit, memory-cgroup OOM kill), `crashed` (the program died of a signal it was not sent by us),
`failed`. A verdict comes only from the tester's reports (function mode) or from the supervisor's own
comparison of the complete output (stdin/stdout) — never from an exit code or from what the program prints
about itself. Events sent by the solution's process are used only to choose between failure statuses.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field

from .compare import compare_output
from .config import CRASHED, FAILED, MEMORY, OUTPUT_LIMIT, PASSED, TIMEOUT, ExecResult, Limits
from .execute import ChunkRaw, Raw

MAX_TEST_DETAILS = 100


class Fault(Exception):
    """A sandbox fault (not the program's doing): retry on a fresh worker, else report `sandbox_error`."""


def _signame(num: int | None) -> str | None:
    if num is None:
        return None
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _check_confined(events: list, proc: dict | None, who: str) -> bool:
    """Raise Fault when the child reported (or showed) a failed confinement; return whether it confined."""
    first = events[0] if events else None
    if isinstance(first, dict) and first.get("ev") == "confine_error":
        raise Fault(f"{who} confinement failed: {first.get('error')}")
    confined = isinstance(first, dict) and first.get("ev") == "confined"
    if not confined and proc and proc.get("own_exit") and proc.get("code") == 121:
        raise Fault(f"{who} exited before confinement completed")
    return confined


def _common_faults(raw: Raw) -> dict:
    if raw.fault:
        raise Fault(raw.fault)
    done = raw.done or {}
    if not done.get("clean", False):
        raise Fault("the zygote could not clean up after the run")
    return done


def _solution_status(raw: Raw, proc: dict, memory_hint: bool) -> tuple[str, str | None]:
    """Failure status from how the solution's process ended (used after `passed` was ruled out)."""
    sig = proc.get("signal") if proc.get("own_exit") else None
    if raw.oom or memory_hint or any(e.get("ev") == "memory" for e in raw.s_events):
        return MEMORY, None
    if sig is not None:
        return CRASHED, _signame(sig)
    return FAILED, None


def _early_status(raw: Raw, proc: dict) -> str | None:
    reason = (raw.done or {}).get("reason")
    if reason == "timeout" or (proc.get("own_exit") and proc.get("signal") == signal.SIGXCPU):
        return TIMEOUT
    if reason == "output_limit" or raw.output_killed:
        return OUTPUT_LIMIT
    return None


def _text(data: bytes, limit: int) -> str:
    return bytes(data[:limit]).decode("utf-8", "replace")


# ------------------------------------------------------------------------------------------ function mode
@dataclass
class TesterReport:
    total: int = 0
    ok: dict = field(default_factory=dict)          # unit -> still passing
    errors: dict = field(default_factory=dict)
    done: bool = False
    internal_error: str | None = None
    setup_errors: list = field(default_factory=list)
    lines: list = field(default_factory=list)


def _flatten(frames: list) -> list:
    out = []
    for f in frames:
        if isinstance(f, dict) and isinstance(f.get("batch"), list):
            out.extend(f["batch"])
        else:
            out.append(f)
    return out


def read_tester(frames: list) -> TesterReport:
    rep = TesterReport()
    for f in _flatten(frames):
        if not isinstance(f, dict):
            continue
        if "total" in f:
            rep.total, rep.lines = int(f["total"]), list(f.get("lines", []))
        elif "u" in f:
            unit = int(f["u"])
            rep.ok[unit] = rep.ok.get(unit, True) and bool(f["ok"])
            if not f["ok"] and "err" in f:
                rep.errors.setdefault(unit, f["err"])
        elif f.get("done"):
            rep.done, rep.setup_errors = True, list(f.get("setup_errors", []))
        elif "internal_error" in f:
            rep.internal_error = str(f["internal_error"])
    return rep


def pair_result(raw: Raw, limits: Limits, duration_s: float) -> ExecResult:
    """Result of a function-mode run (assert or call tests). Raises Fault for sandbox faults."""
    done = _common_faults(raw)
    sol, tst = done.get("solution", {}), done.get("tester", {})
    _check_confined(raw.s_events, sol, "solution")
    t_confined = _check_confined(raw.t_frames, tst, "tester")
    rep = read_tester(raw.t_frames)
    if rep.internal_error:
        raise Fault(f"tester error: {rep.internal_error}")
    status = _early_status(raw, sol)
    if status is None and not rep.done:
        how = f"signal {_signame(tst.get('signal'))}" if tst.get("signal") else f"code {tst.get('code')}"
        raise Fault(f"tester ended without a verdict ({how}, confined={t_confined}); "
                    f"stderr: {_text(raw.t_err, 500)}")
    n_passed = sum(1 for u in range(rep.total) if rep.ok.get(u) is True)
    signame = None
    if status is None:
        if rep.total and n_passed == rep.total:
            status = PASSED
        else:
            memory_hint = any(str(e).startswith("MemoryError") for e in rep.errors.values())
            status, signame = _solution_status(raw, sol, memory_hint)
    tests = [{"ok": rep.ok.get(u) is True, **({"error": rep.errors[u]} if u in rep.errors else {}),
              **({"line": rep.lines[u]} if u < len(rep.lines) else {})} for u in range(rep.total)]
    details = {"tests": tests[:MAX_TEST_DETAILS], "wall_s": done.get("wall_s"),
               "solution": {k: sol.get(k) for k in ("code", "signal", "cpu_s", "maxrss_kb")}}
    if signame:
        details["signal"] = signame
    if rep.setup_errors:
        details["setup_errors"] = rep.setup_errors
    return ExecResult(status, status == PASSED, n_passed / rep.total if rep.total else 0.0, n_passed,
                      rep.total, duration_s, _text(raw.stdout, limits.keep_output_bytes),
                      _text(raw.stderr, limits.keep_output_bytes), details)


# --------------------------------------------------------------------------------------------- stdio mode
@dataclass
class CaseResult:
    status: str
    error: str = ""
    signal: str | None = None
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0


def stdio_case(raw: Raw, expected: str, float_tol: float | None, limits: Limits) -> CaseResult:
    """Verdict for one stdin/stdout case. Raises Fault for sandbox faults."""
    done = _common_faults(raw)
    sol = done.get("solution", {})
    _check_confined(raw.s_events, sol, "solution")
    out, err = _text(raw.stdout, len(raw.stdout)), _text(raw.stderr, limits.keep_output_bytes)
    keep = limits.keep_output_bytes
    base = dict(stdout=out[:keep], stderr=err, wall_s=float(done.get("wall_s") or 0.0))
    status = _early_status(raw, sol)
    if status:
        return CaseResult(status, f"{status} after {base['wall_s']:.2f}s", **base)
    ok, why = compare_output(out, expected, float_tol)
    code = sol.get("code")
    if ok and code == 0:
        return CaseResult(PASSED, **base)
    status, signame = _solution_status(raw, sol, False)
    if status == FAILED:
        why = why if code == 0 else f"exit code {code}" + (f"; {why}" if why else "")
    return CaseResult(status, why or status, signame, **base)


def chunk_cases(chunk: ChunkRaw, expected: list[str], float_tol: float | None,
                limits: Limits) -> dict[int, CaseResult]:
    """Verdicts for the cases of a chunk that its leader decided (by position in the chunk); the others are
    re-run one request each. Raises Fault when the run itself failed (the caller restarts the worker)."""
    done = _common_faults(Raw("solo", done=chunk.done, fault=chunk.fault))
    if not chunk.frames:
        if (done.get("solution") or {}).get("code") == 121:
            raise Fault("solution confinement failed in a chunk")
        return {}
    confined = chunk.frames[0]
    _check_confined([confined], done.get("solution"), "solution")
    if not (isinstance(confined, dict) and confined.get("ev") == "confined"):
        return {}
    out: dict[int, CaseResult] = {}
    for rep in chunk.frames[1:]:
        k = rep.get("case") if isinstance(rep, dict) else None
        if not isinstance(k, int) or not 0 <= k < chunk.n or k in out:
            raise Fault(f"the chunk leader sent an unexpected report: {str(rep)[:200]}")
        if chunk.killed_case is not None and k >= chunk.killed_case:
            break
        if not rep["timeout"] and chunk.closed[k] < 2:
            break                               # its output was not complete when the run ended
        raw = Raw("solo", stdout=chunk.stdout[k], stderr=chunk.stderr[k], output_total=chunk.output_total[k],
                  s_events=[confined] + ([{"ev": "memory"}] if rep.get("memory") else []),
                  done={"op": "done", "reason": "timeout" if rep["timeout"] else None, "clean": True,
                        "wall_s": rep["wall_s"],
                        "solution": {"own_exit": True, **{f: rep.get(f) for f in ("code", "signal", "cpu_s",
                                                                                  "maxrss_kb")}}})
        out[k] = stdio_case(raw, expected[k], float_tol, limits)
    k = chunk.killed_case
    if k is not None and k not in out and (chunk.done or {}).get("reason") == "output_limit":
        raw = Raw("solo", stdout=chunk.stdout[k], stderr=chunk.stderr[k], output_total=chunk.output_total[k],
                  output_killed=True, s_events=[confined],
                  done={"op": "done", "reason": "output_limit", "clean": True, "wall_s": 0.0, "solution": {}})
        out[k] = stdio_case(raw, expected[k], float_tol, limits)
    if chunk.oom:     # an OOM kill somewhere in the chunk: its failures might be `memory` on their own run
        out = {k: r for k, r in out.items() if r.status == PASSED}
    return out


def stdio_result(cases: list[CaseResult], n_total: int, duration_s: float,
                 indices: list[int] | None = None) -> ExecResult:
    """Aggregate case results (in case order; `indices` names the cases when some were skipped)."""
    indices = list(range(len(cases))) if indices is None else indices
    n_passed = sum(c.status == PASSED for c in cases)
    first_bad = next((c for c in cases if c.status != PASSED), None)
    status = PASSED if n_passed == n_total else (first_bad.status if first_bad else FAILED)
    shown = first_bad or (cases[-1] if cases else CaseResult(FAILED))
    details: dict = {"tests": [{"case": k, "ok": c.status == PASSED, "status": c.status,
                                **({"error": c.error} if c.error else {})}
                               for k, c in list(zip(indices, cases))[:MAX_TEST_DETAILS]]}
    if len(cases) < n_total:
        details["skipped"] = n_total - len(cases)
    if shown.signal:
        details["signal"] = shown.signal
    return ExecResult(status, status == PASSED, n_passed / n_total if n_total else 0.0, n_passed, n_total,
                      duration_s, shown.stdout, shown.stderr, details)
