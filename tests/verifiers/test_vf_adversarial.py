"""The adversarial set (data/verifiers/adversarial.jsonl): every item within deadline + 0.5 s, from the main
thread and from a worker thread, with worker memory capped and the caller's memory flat."""
import threading
import time
from pathlib import Path

import pytest

from reasoner_verifiers import get_verifier

DEADLINE = 1.0
SLACK = 0.5
MEMORY_MB = 768


def _rss_mb(pid="self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def verifier():
    v = get_verifier("math", extract="auto", deadline_s=DEADLINE, memory_mb=MEMORY_MB)
    v.warm_up()
    yield v
    v.close()


def _run_all(v, rows):
    results = []
    for row in rows:
        t0 = time.monotonic()
        score = v.score(row["completion"], row)
        results.append((row, score, time.monotonic() - t0))
    return results


@pytest.mark.parametrize("where", ["main", "thread"])
def test_adversarial_items_return_within_deadline(verifier, adversarial_rows, where):
    rss_before = _rss_mb()
    if where == "main":
        results = _run_all(verifier, adversarial_rows)
    else:
        box = {}
        th = threading.Thread(target=lambda: box.setdefault("r", _run_all(verifier, adversarial_rows)))
        th.start()
        th.join(len(adversarial_rows) * (DEADLINE + SLACK) + 30)
        assert not th.is_alive()
        results = box["r"]
    slow = [(row["id"], round(dt, 2)) for row, _, dt in results if dt > DEADLINE + SLACK]
    assert not slow, f"over deadline + {SLACK} s: {slow}"
    unexpected = [(row["id"], s.status) for row, s, _ in results if s.status not in row["expect"]]
    assert not unexpected, unexpected
    assert all(s.value == 0.0 for _, s, _ in results)
    # the caller's memory stays flat: the megabyte strings are scanned, never parsed here
    assert _rss_mb() - rss_before < 150


def test_worker_memory_is_capped(verifier, adversarial_rows):
    heavy = [row for row in adversarial_rows if "timeout" in row["expect"]]
    verifier.score_batch([r["completion"] for r in heavy], heavy)
    for pid in verifier.pool.pids():
        limits = Path(f"/proc/{pid}/limits").read_text()
        line = next(l for l in limits.splitlines() if l.startswith("Max address space"))
        assert str(MEMORY_MB * 2**20) in line
        status = Path(f"/proc/{pid}/status").read_text()
        peak_kb = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])
        assert peak_kb < MEMORY_MB * 1024


def test_rejections_say_why(verifier, adversarial_rows):
    by_id = {row["id"]: row for row in adversarial_rows}
    for rid, word in [("tower_2_2_40", "exponent"), ("factorial_10_10", "factorial"), ("megabyte_digits", "characters"),
                      ("deep_frac_150", "depth"), ("many_items", "items")]:
        score = verifier.score(by_id[rid]["completion"], by_id[rid])
        assert score.status == "rejected" and word in score.details["reason"], (rid, score)


def test_parallel_batch_of_bombs_is_bounded(verifier, adversarial_rows):
    slow = [row for row in adversarial_rows if "timeout" in row["expect"]]
    t0 = time.monotonic()
    scores = verifier.score_batch([r["completion"] for r in slow], slow)
    elapsed = time.monotonic() - t0
    # two workers: at most ceil(n/2) deadlines back to back, plus respawn waits
    assert elapsed < (len(slow) + 1) // 2 * (DEADLINE + SLACK) + 5
    assert all(s.status in r["expect"] for r, s in zip(slow, scores))
