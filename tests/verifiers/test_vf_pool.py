"""The worker pool: deadlines from any thread, memory cap, crashes, concurrency, clean shutdown."""
import os
import threading
import time
from pathlib import Path

import pytest

from reasoner_verifiers.pool import CRASHED, ERROR, MEMORY, OK, TIMEOUT, WorkerPool

PROBE = "reasoner_verifiers.pool_probe:run"


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(PROBE, workers=2, memory_mb=512)
    p.start(wait=True)
    yield p
    p.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_results_in_order(pool):
    out = pool.map([("echo", i) for i in range(20)], deadline_s=5)
    assert [o.kind for o in out] == [OK] * 20
    assert [o.value for o in out] == list(range(20))


@pytest.mark.parametrize("where", ["main", "thread"])
def test_deadline_kills_and_replaces(pool, where):
    box = {}

    def go():
        t0 = time.monotonic()
        box["out"] = pool.map([("spin", 30), ("echo", "fine")], deadline_s=0.5)
        box["elapsed"] = time.monotonic() - t0

    if where == "main":
        go()
    else:
        th = threading.Thread(target=go)
        th.start()
        th.join(10)
        assert not th.is_alive()
    spin, fine = box["out"]
    assert spin.kind == TIMEOUT and fine.kind == OK
    assert box["elapsed"] < 0.5 + 0.5
    # the pool heals: both workers answer again
    assert [o.kind for o in pool.map([("echo", 1)] * 4, deadline_s=10)] == [OK] * 4


def test_budget_bounds_a_call_even_when_workers_are_busy(pool):
    t0 = time.monotonic()
    out = pool.map([("sleep", 5)] * 4, deadline_s=10, budget_s=0.6)
    assert time.monotonic() - t0 < 0.6 + 0.5
    assert all(o.kind == TIMEOUT for o in out)


def test_memory_cap(pool):
    out = pool.map([("alloc", 2048), ("alloc", 16)], deadline_s=10)
    assert out[0].kind == MEMORY
    assert out[1].kind == OK and out[1].value == 16 * 2**20
    for pid in pool.pids():
        limits = Path(f"/proc/{pid}/limits").read_text()
        line = next(l for l in limits.splitlines() if l.startswith("Max address space"))
        assert str(512 * 2**20) in line


def test_crash_and_exception_are_reported(pool):
    out = pool.map([("exit", 3), ("raise", "boom"), ("echo", 7)], deadline_s=10)
    assert out[0].kind == CRASHED
    assert out[1].kind == ERROR and "boom" in out[1].value
    assert out[2].kind == OK


def test_concurrent_maps_from_threads(pool):
    results = {}

    def go(k):
        results[k] = pool.map([("echo", (k, i)) for i in range(10)], deadline_s=10)

    threads = [threading.Thread(target=go, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for k in range(4):
        assert [o.value for o in results[k]] == [[k, i] for i in range(10)]  # JSON on the wire: lists


def test_workers_do_not_load_torch(pool):
    out = pool.map([("modules", None)], deadline_s=10)[0]
    assert out.kind == OK and "torch" not in out.value
    for pid in pool.pids():
        assert "libtorch" not in Path(f"/proc/{pid}/maps").read_text()


def test_close_leaves_no_processes():
    p = WorkerPool(PROBE, workers=2)
    p.start(wait=True)
    assert p.map([("echo", 1)], deadline_s=5)[0].kind == OK
    time.sleep(0.2)
    pids = p.pids()
    assert len(pids) == 2
    p.close()
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="closed"):
        p.map([("echo", 1)], deadline_s=1)


def test_context_manager_and_lazy_start():
    with WorkerPool(PROBE, workers=1) as p:
        assert p.pids() == []  # nothing starts before it is needed
        assert p.map([("pid", None)], deadline_s=5)[0].kind == OK
        pids = p.pids()
    assert not any(_alive(pid) for pid in pids)


def test_start_failure_is_an_error_not_a_hang():
    with WorkerPool("reasoner_verifiers.no_such_module:run", workers=1, startup_timeout_s=20) as p:
        with pytest.raises(RuntimeError, match="no_such_module"):
            p.map([("echo", 1)], deadline_s=1)


def test_worker_exits_when_parent_dies(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from reasoner_verifiers.pool import WorkerPool\n"
        f"p = WorkerPool({PROBE!r}, workers=1)\n"
        "p.start(wait=True)\n"
        "print(p.pids()[0], flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_replacement_after_a_kill_is_fast(pool):
    pool.map([("spin", 30), ("spin", 30)], deadline_s=0.3)
    t0 = time.monotonic()
    out = pool.map([("echo", 1), ("echo", 2)], deadline_s=5)
    assert [o.kind for o in out] == [OK, OK]
    assert time.monotonic() - t0 < 1.0  # forked from the warm fork server, not a new interpreter


def test_fork_server_does_not_load_torch(pool):
    pool.map([("echo", 1)], deadline_s=5)
    assert pool.server_pid is not None
    assert "libtorch" not in Path(f"/proc/{pool.server_pid}/maps").read_text()


# ------------------------------------------------------------------------------ the wire, read as an attacker
def test_a_pickled_reply_is_never_unpickled(pool, tmp_path):
    """A worker that answers with a pickle (which would create a file when unpickled) gets ERROR, and the
    caller's process runs none of it."""
    planted = tmp_path / "planted"
    out = pool.map([("pickle", str(planted)), ("echo", 1)], deadline_s=5)
    assert out[0].kind == ERROR and "not JSON" in out[0].value
    assert out[1].kind == OK
    assert not planted.exists()


def test_a_late_second_reply_is_not_taken_for_the_next_task():
    with WorkerPool(PROBE, workers=1) as p:
        assert p.map([("late", None)], deadline_s=5)[0].value == "real"
        time.sleep(0.2)  # the stray reply is in the pipe now
        out = p.map([("echo", "mine"), ("echo", "mine too")], deadline_s=5)
        assert [o.kind for o in out] == [OK, OK] and [o.value for o in out] == ["mine", "mine too"]
        assert p.restarts >= 1  # the desynchronised worker was replaced


@pytest.mark.parametrize("where", ["main", "thread"])
def test_half_a_frame_then_silence_is_a_timeout(pool, where):
    box = {}

    def go():
        t0 = time.monotonic()
        box["out"] = pool.map([("stall", None)], deadline_s=0.5)[0]
        box["elapsed"] = time.monotonic() - t0

    if where == "main":
        go()
    else:
        th = threading.Thread(target=go)
        th.start()
        th.join(10)
        assert not th.is_alive()
    assert box["out"].kind == TIMEOUT and box["elapsed"] < 1.0


def test_an_oversized_frame_header_is_refused_at_once(pool):
    t0 = time.monotonic()
    out = pool.map([("huge", None)], deadline_s=5)[0]
    assert out.kind == ERROR and "limit" in out.value and time.monotonic() - t0 < 2.0


def test_a_reply_with_a_foreign_sequence_number_is_refused(pool):
    out = pool.map([("wrong_seq", None), ("echo", 2)], deadline_s=5)
    assert out[0].kind == ERROR and "malformed" in out[0].value
    assert out[1].kind == OK and out[1].value == 2


def test_results_json_cannot_carry_are_errors_not_crashes(pool):
    out = pool.map([("unencodable", None), ("echo", 3)], deadline_s=5)
    assert out[0].kind == ERROR and "unencodable" in out[0].value
    assert out[1].value == 3
    unsendable = pool.map([("echo", {1, 2}), ("echo", 4)], deadline_s=5)
    assert unsendable[0].kind == ERROR and "cannot be sent" in unsendable[0].value and unsendable[1].value == 4
