"""stdin/stdout cases sent to a worker in chunks (`_inside/leader.py`): each case is still a fresh process with
its own deadline, output and an emptied working directory, and the verdicts equal those of one request per
case (`stdio_chunk=1`). Hostile programs inside chunks are in test_sb_hostile_chunks.py."""
from __future__ import annotations

import json

import pytest

from sandbox import Limits, specs

ECHO = "import sys\nprint(sys.stdin.read().strip())\n"


def cases(*pairs: tuple[str, str]) -> dict:
    return {"kind": "stdio", "cases": [{"input": i, "output": o} for i, o in pairs]}


def per_case(res) -> list[tuple[int, str]]:
    return [(t["case"], t["status"]) for t in res.details["tests"]]


@pytest.fixture(scope="module")
def one_by_one(make_sandbox_module):
    return make_sandbox_module(stdio_chunk=1)


@pytest.fixture(scope="module")
def make_sandbox_module():
    import warnings

    from sandbox import Sandbox, SandboxWarning
    boxes = []

    def make(**kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SandboxWarning)
            box = Sandbox(**{"workers": 2, "limits": Limits(timeout_s=10.0), **kwargs})
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.close()


@pytest.fixture
def spy(monkeypatch):
    """Counts the requests of each kind and keeps every chunk's per-case stdout."""
    import sandbox.core as core
    seen = {"single": 0, "chunks": 0, "outputs": []}
    execute, chunk_cases = core.execute, core.chunk_cases

    def single(*args, **kwargs):
        seen["single"] += 1
        return execute(*args, **kwargs)

    def chunk(raw, *args, **kwargs):
        seen["chunks"] += 1
        seen["outputs"] += [bytes(out).decode() for out in raw.stdout]
        return chunk_cases(raw, *args, **kwargs)

    monkeypatch.setattr(core, "execute", single)
    monkeypatch.setattr(core, "chunk_cases", chunk)
    return seen


def test_cases_run_in_one_request_each_in_a_fresh_process(sb, spy):
    if sb.stdio_chunk == 1:
        pytest.skip("chunks are off on this host (seccomp signal restriction by pid)")
    res = sb.run("import os, random\nprint(os.getppid(), os.getpid(), random.getrandbits(64))\n",
                 cases(*[("", "")] * 6))
    assert res.n_total == 6 and res.n_passed == 0
    assert (spy["single"], spy["chunks"]) == (0, 1)
    rows = [line.split() for line in spy["outputs"]]
    assert len(rows) == 6
    assert len({r[0] for r in rows}) == 1 and rows[0][0] != "1"     # one leader, not the zygote (pid 1)
    assert len({r[1] for r in rows}) == 6                            # a process per case
    assert len({r[2] for r in rows}) == 6                            # reseeded at each fork


def test_chunked_verdicts_equal_one_request_per_case(sb, one_by_one, shared_data):
    rows = [json.loads(line) for line in (shared_data / "code" / "cp_stdio_sample.jsonl").open()]
    items = []
    for r in rows:
        ins, outs = r["tests"]["inputs"], r["tests"]["outputs"]
        items += [specs.stdio(ins, outs, r["reference_solution"]), specs.stdio(ins, outs, "pass\n"),
                  specs.stdio(ins, outs, "print(input())\n"), specs.stdio(ins, outs, "import sys\nsys.exit(3)\n"),
                  specs.stdio(ins, outs, "def f(:\n"), specs.stdio(ins, outs, "x = 1\nif x is 1:\n    print(input())\n")]
    fast, slow = sb.run_batch(items), one_by_one.run_batch(items)
    assert sum(r.n_total for r in fast) > 300
    for a, b in zip(fast, slow):
        assert (a.status, a.n_passed, a.n_total, per_case(a)) == (b.status, b.n_passed, b.n_total, per_case(b))
        assert (a.stdout, a.stderr) == (b.stdout, b.stderr)
    assert [r.passed for r in fast[::6]] == [True] * len(rows)
    assert all("SyntaxWarning" in r.stderr for r in fast[5::6])     # compile-time warnings still shown


def test_each_case_starts_with_an_empty_directory(sb):
    # Passes only if every case finds an empty working directory and no temporary file of an earlier case.
    code = ("import os, random\nk = int(input())\nok = os.listdir('.') == []\n"
            "ok = ok and not os.path.exists('/tmp/sbx_state') and not os.path.exists('/dev/shm/sbx_state')\n"
            "open('state.txt', 'w').write(str(random.random()))\nos.mkdir('d')\nopen('d/f', 'w').write('y')\n"
            "for root in ('/tmp', '/dev/shm'):\n    try:\n        open(root + '/sbx_state', 'w').write('z')\n"
            "    except OSError:\n        pass\n"
            "print('clean' if ok else 'dirty')\n")
    res = sb.run(code, cases(*[(str(k), "clean") for k in range(8)]))
    assert res.passed, res.details
    dirty = sb.run(code.replace("os.listdir('.') == []", "True").replace("not os.path.exists('/tmp/sbx_state')",
                                                                        "True"), cases(("0", "clean")))
    assert dirty.passed                        # the check itself: writing the files works


def test_timeout_stops_the_item(make_sandbox_module):
    box = make_sandbox_module()
    code = "import time\nk = int(input())\nif k == 2:\n    time.sleep(60)\nprint(k)\n"
    res = box.run(code, cases(*[(str(k), str(k)) for k in range(6)]), timeout_s=1.0)
    assert res.status == "timeout" and res.n_passed == 2
    assert per_case(res) == [(0, "passed"), (1, "passed"), (2, "timeout")]
    assert res.details["skipped"] == 3


def test_output_limit_memory_and_crash_inside_a_chunk(make_sandbox_module, one_by_one):
    box = make_sandbox_module(limits=Limits(timeout_s=10.0, max_output_bytes=1 << 20, memory_mb=256))
    code = ("import sys, ctypes\nk = int(input())\n"
            "if k == 1:\n    sys.stdout.write('y' * (4 << 20))\n"
            "if k == 3:\n    x = bytearray(1 << 30)\n"
            "if k == 4:\n    ctypes.string_at(0)\n"
            "if k == 5:\n    sys.exit(7)\n"
            "print(k)\n")
    res = box.run(code, cases(*[(str(k), str(k)) for k in range(7)]))
    assert per_case(res) == [(0, "passed"), (1, "output_limit"), (2, "passed"), (3, "memory"), (4, "crashed"),
                             (5, "failed"), (6, "passed")]
    assert res.n_passed == 3


def test_stdio_chunk_is_validated_and_fits_the_descriptor_limit(make_sandbox_module):
    with pytest.raises(ValueError, match="stdio_chunk"):
        make_sandbox_module(stdio_chunk=0)
    few = make_sandbox_module(limits=Limits(timeout_s=10.0, max_open_files=8))
    assert few.stdio_chunk == 1                 # a request's descriptors would not fit: one case per request
    assert few.run(ECHO, cases(("1", "1"), ("2", "2"), ("3", "3"))).passed
    some = make_sandbox_module(limits=Limits(timeout_s=10.0, max_open_files=28))
    assert some.stdio_chunk in (1, 6)           # 6 cases x 3 descriptors + control + slack


def test_a_chunk_holds_at_most_about_one_executions_output(make_sandbox_module, spy):
    # Six cases of 600 kB each, under a 1 MB output limit: every case is within its limit, but a chunk stops
    # once it holds more than the limit, and the rest of the cases still pass (in later requests).
    box = make_sandbox_module(limits=Limits(timeout_s=10.0, max_output_bytes=1 << 20))
    big = "y" * (600 << 10)
    res = box.run("import sys\nk = int(input())\nsys.stdout.write(str(k) + 'y' * (600 << 10))\n",
                  cases(*[(str(k), str(k) + big) for k in range(6)]))
    assert res.passed and res.n_passed == 6, res.details
    assert spy["chunks"] >= 3                    # several chunks, each stopped after about two cases
