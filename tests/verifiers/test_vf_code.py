"""Code verifier glue, against a fake sandbox with the real `run_batch` signature; end-to-end against the
`sandbox` package when it is importable (it is built in a sibling branch)."""
from dataclasses import dataclass, field

import pytest

from reasoner_verifiers import get_verifier
from reasoner_verifiers.code import CodeOptions, CodeVerifier, extract_code

TESTS = {"kind": "call", "fn": "add", "cases": [{"args": [1, 2], "expected": 3}, {"args": [2, 2], "expected": 4}]}


@dataclass
class FakeResult:
    status: str
    passed: bool
    fraction: float
    n_passed: int = 0
    n_total: int = 2
    duration_s: float = 0.01
    stdout: str = ""
    stderr: str = ""
    details: dict = field(default_factory=dict)


class FakeSandbox:
    """Returns canned results keyed by the code's first line; records what it was sent."""

    def __init__(self, results, raise_exc=None):
        self.results = results
        self.raise_exc = raise_exc
        self.calls = []
        self.closed = False

    def run_batch(self, jobs):
        self.calls.append(list(jobs))
        if self.raise_exc:
            raise self.raise_exc
        return [self.results[code.splitlines()[0]] for code, _ in jobs]

    def close(self):
        self.closed = True


def block(code, lang="python"):
    return f"Here it is:\n```{lang}\n{code}\n```\n"


@pytest.mark.parametrize("completion, expected", [
    (block("def add(a, b):\n    return a + b"), "def add(a, b):\n    return a + b\n"),
    ("```\nx = 1\n```", "x = 1\n"),
    ("```py\nfirst\n```\nthen\n```python\nsecond\n```", "second\n"),
    ("```js\nconsole.log(1)\n```", None),
    ("<answer>```python\nin_tag\n```</answer> ```python\nafter\n```", "in_tag\n"),
    ("no code at all", None),
])
def test_extract_code(completion, expected):
    assert extract_code(completion, CodeOptions()) == expected


def test_unfenced_answer_only_when_allowed():
    text = "<think>t</think><answer>def f(): pass</answer>"
    assert extract_code(text, CodeOptions()) is None
    assert extract_code(text, CodeOptions(allow_unfenced=True)) == "def f(): pass"


def test_status_mapping_and_fraction():
    results = {
        "ok": FakeResult("passed", True, 1.0, 2),
        "half": FakeResult("failed", False, 0.5, 1),
        "slow": FakeResult("timeout", False, 0.5, 1),
        "hog": FakeResult("memory", False, 0.0),
        "crash": FakeResult("crashed", False, 0.0),
        "infra": FakeResult("sandbox_error", False, 0.0, stderr="seccomp failed"),
        "odd": FakeResult("weird_new_status", False, 1.0),
    }
    sb = FakeSandbox(results)
    v = CodeVerifier(CodeOptions(), sandbox=sb)
    names = list(results)
    scores = v.score_batch([block(n) for n in names] + ["nothing"], [{"tests": TESTS}] * (len(names) + 1))
    got = {n: (s.status, s.value) for n, s in zip(names + ["none"], scores)}
    assert got == {
        "ok": ("correct", 1.0), "half": ("wrong", 0.5), "slow": ("timeout", 0.5), "hog": ("wrong", 0.0),
        "crash": ("wrong", 0.0), "infra": ("error", 0.0), "odd": ("error", 0.0), "none": ("no_answer", 0.0),
    }
    assert len(sb.calls) == 1 and len(sb.calls[0]) == len(names)  # one batch, no code -> not sent
    assert sb.calls[0][0] == ("ok\n", TESTS)
    v.close()
    assert not sb.closed  # an injected sandbox belongs to the caller


def test_all_or_nothing_reward():
    sb = FakeSandbox({"half": FakeResult("failed", False, 0.5, 1)})
    s = CodeVerifier(CodeOptions(reward="all"), sandbox=sb).score(block("half"), {"tests": TESTS})
    assert (s.status, s.value) == ("wrong", 0.0)


def test_sandbox_faults_are_errors_not_wrong():
    sb = FakeSandbox({}, raise_exc=OSError("fork failed"))
    scores = CodeVerifier(sandbox=sb).score_batch([block("a"), block("b")], [{"tests": TESTS}] * 2)
    assert [s.status for s in scores] == ["error", "error"]
    assert "fork failed" in scores[0].details["reason"]


def test_missing_tests_field_names_the_example():
    with pytest.raises(ValueError, match="example 1 has no 'tests'"):
        CodeVerifier(sandbox=FakeSandbox({})).score_batch([block("a"), block("b")], [{"tests": TESTS}, {}])


def _have_sandbox() -> bool:
    try:
        import sandbox
        _ = sandbox.Sandbox, sandbox.Limits  # the public API this branch writes against
    except (ImportError, AttributeError):
        return False
    return True


HAVE_SANDBOX = _have_sandbox()


@pytest.mark.skipif(not HAVE_SANDBOX, reason="the sandbox package is not importable (built in the sandbox branch)")
def test_end_to_end_with_the_real_sandbox():
    v = get_verifier("code", workers=1, timeout_s=2.0)
    try:
        completions = [
            block("def add(a, b):\n    return a + b"),
            block("def add(a, b):\n    return a * b"),  # passes 2*2 only
            block("def add(a, b):\n    while True:\n        pass"),
            "I don't know.",
        ]
        scores = v.score_batch(completions, [{"tests": TESTS}] * 4)
        assert [s.status for s in scores] == ["correct", "wrong", "timeout", "no_answer"]
        assert [s.value for s in scores] == [1.0, 0.5, 0.0, 0.0]
        stdio = {"kind": "stdio", "cases": [{"input": "3\n", "output": "6\n"}]}
        s = v.score(block("print(int(input()) * 2)"), {"tests": stdio})
        assert s.status == "correct"
    finally:
        v.close()
