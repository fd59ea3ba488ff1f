"""Public value types: `Limits` (what one execution may use), `ExecResult` (what happened), the statuses, and
validation of a test specification (`validate_tests`), which rejects bad input with one error naming the key.
"""
from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ._inside import tester, wire

PASSED, FAILED, TIMEOUT, MEMORY = "passed", "failed", "timeout", "memory"
OUTPUT_LIMIT, CRASHED, SANDBOX_ERROR = "output_limit", "crashed", "sandbox_error"
STATUSES = (PASSED, FAILED, TIMEOUT, MEMORY, OUTPUT_LIMIT, CRASHED, SANDBOX_ERROR)
KINDS = ("assert", "call", "stdio")


@dataclass(frozen=True)
class Limits:
    """Per-execution limits. For stdin/stdout tests an execution is one test case."""

    timeout_s: float = 5.0              # wall clock, from fork to the verdict
    memory_mb: int = 512                # address space of each solution process (RLIMIT_AS)
    cpu_s: int | None = None            # CPU seconds per process (RLIMIT_CPU); default ceil(timeout_s) + 1
    max_processes: int = 16             # processes and threads of the solution (RLIMIT_NPROC, pids cgroup)
    max_open_files: int = 64            # RLIMIT_NOFILE
    max_file_mb: int = 16               # largest file the solution may write (RLIMIT_FSIZE)
    tmp_mb: int = 64                    # size of the private /tmp and /dev/shm (tmpfs)
    max_output_bytes: int = 16 << 20    # stdout + stderr of one execution; more -> `output_limit`
    keep_output_bytes: int = 4096       # stdout / stderr kept in the result
    max_message_bytes: int = 4 << 20    # one value sent by the solution to the tester
    tester_memory_mb: int = 1024        # address space of the tester process
    worker_memory_mb: int | None = None  # memory cgroup of one worker; default memory_mb + tester + 256

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("cpu_s", "worker_memory_mb"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Limits.{f.name} must be a positive number, got {value!r}")
        if not math.isfinite(self.timeout_s):
            raise ValueError("Limits.timeout_s must be finite")

    def with_timeout(self, timeout_s: float | None) -> Limits:
        if timeout_s is None:
            return self
        return Limits(**{**asdict(self), "timeout_s": timeout_s})

    def for_zygote(self) -> dict:
        """The subset the zygote applies as rlimits."""
        return {"memory_mb": int(self.memory_mb), "tester_memory_mb": int(self.tester_memory_mb),
                "max_file_mb": int(self.max_file_mb), "max_open_files": int(self.max_open_files),
                "max_processes": int(self.max_processes),
                "cpu_s": int(self.cpu_s) if self.cpu_s else int(math.ceil(self.timeout_s)) + 1}

    @property
    def worker_memory_bytes(self) -> int:
        mb = self.worker_memory_mb or (self.memory_mb + self.tester_memory_mb + 256)
        return int(mb) << 20


@dataclass
class ExecResult:
    """Outcome of one program against its tests. `passed` is true only for status `passed`."""

    status: str
    passed: bool
    fraction: float
    n_passed: int
    n_total: int
    duration_s: float
    stdout: str = ""
    stderr: str = ""
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def sandbox_error(message: str, duration_s: float = 0.0, n_total: int = 0) -> ExecResult:
    return ExecResult(SANDBOX_ERROR, False, 0.0, 0, n_total, duration_s, details={"error": message})


# ------------------------------------------------------------------------------------------- validation
_KEYS = {"assert": ({"kind", "source"}, {"prelude", "entry_points"}),
         "call": ({"kind", "fn", "cases"}, {"float_tol"}),
         "stdio": ({"kind", "cases"}, {"float_tol"})}


def _check_keys(obj: Mapping, required: set[str], optional: set[str], where: str) -> None:
    missing = sorted(required - set(obj))
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r}")
    unknown = sorted(set(obj) - required - optional)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (valid: {', '.join(sorted(required | optional))})")


def _check_plain(value: Any, where: str) -> None:
    """Call cases cross to the tester wire-encoded (integer dict keys, sets, tuples, huge integers survive);
    what the codec cannot carry is a bad spec."""
    try:
        opaque = _opaque_type(wire.encode(value))
    except (wire.WireError, RecursionError) as exc:
        raise ValueError(f"{where} is not plain data: {exc}") from None
    except Exception as exc:                 # a foreign object whose conversion raised
        raise ValueError(f"{where} is not plain data: {type(exc).__name__}: {exc}") from None
    if opaque:
        raise ValueError(f"{where} is not plain data: it holds a {opaque} object")


def _opaque_type(tree: Any) -> str | None:
    """The type name of the first object in an encoded tree that the codec could only make opaque."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if type(node) is list:
            stack.extend(node)
        elif type(node) is dict:
            (tag, v), = node.items()
            if tag == "o":
                return str(v[0])
            if type(v) is list:
                stack.append(v)
    return None


def _check_source(source: Any, where: str) -> None:
    if not isinstance(source, str):
        raise ValueError(f"{where} must be a string")


@functools.lru_cache(maxsize=4096)
def prepared_assert(source: str, prelude: str) -> dict:
    """Instrumented, compiled and marshalled assert tests, cached per source: in GRPO every test source is
    run once per sample of its group, and compiling is most of the tester's own work."""
    with warnings.catch_warnings():          # e.g. invalid escape sequences in dataset tests
        warnings.simplefilter("ignore")
        return tester.prepare(source, prelude)


def validate_tests(tests: Any, where: str = "tests") -> dict:
    """Check a test specification; return it as a plain dict. Raises ValueError naming the bad key."""
    if not isinstance(tests, Mapping):
        raise ValueError(f"{where} must be an object, got {type(tests).__name__}")
    kind = tests.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    required, optional = _KEYS[kind]
    _check_keys(tests, required, optional, where)
    spec = dict(tests)
    if kind == "assert":
        _check_source(spec["source"], f"{where}.source")
        if "prelude" in spec:
            _check_source(spec["prelude"], f"{where}.prelude")
        try:                                   # parsed and compiled once per distinct source (cached)
            prepared_assert(spec["source"], spec.get("prelude", ""))
        except (SyntaxError, ValueError) as exc:
            which = "prelude" if getattr(exc, "filename", None) == "prelude.py" else "source"
            raise ValueError(f"{where}.{which} does not compile: {exc}") from None
        eps = spec.get("entry_points", [])
        if not isinstance(eps, list) or not all(isinstance(e, str) and e.isidentifier() for e in eps):
            raise ValueError(f"{where}.entry_points must be a list of names")
        return spec
    if "float_tol" in spec and (isinstance(spec["float_tol"], bool)
                                or not isinstance(spec["float_tol"], (int, float)) or spec["float_tol"] < 0):
        raise ValueError(f"{where}.float_tol must be a non-negative number")
    cases = spec["cases"]
    if not isinstance(cases, list) or not cases:
        raise ValueError(f"{where}.cases must be a non-empty list")
    if kind == "call":
        if not isinstance(spec["fn"], str) or not all(p.isidentifier() for p in spec["fn"].split(".")):
            raise ValueError(f"{where}.fn must be a function name (optionally dotted), got {spec['fn']!r}")
        for i, case in enumerate(cases):
            c = f"{where}.cases[{i}]"
            if not isinstance(case, Mapping):
                raise ValueError(f"{c} must be an object")
            _check_keys(case, {"args", "expected"}, {"kwargs"}, c)
            if not isinstance(case["args"], (list, tuple)):
                raise ValueError(f"{c}.args must be a list")
            kwargs = case.get("kwargs", {})
            if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
                raise ValueError(f"{c}.kwargs must be an object with string keys")
            for key, value in (("args", list(case["args"])), ("kwargs", dict(kwargs)), ("expected", case["expected"])):
                _check_plain(value, f"{c}.{key}")
        return spec
    for i, case in enumerate(cases):
        c = f"{where}.cases[{i}]"
        if not isinstance(case, Mapping):
            raise ValueError(f"{c} must be an object")
        _check_keys(case, {"input", "output"}, set(), c)
        for key in ("input", "output"):
            if not isinstance(case[key], str):
                raise ValueError(f"{c}.{key} must be a string")
    return spec
