"""Build (code, tests) pairs for common dataset layouts: HumanEval, MBPP, CodeContests-style stdin/stdout.

HumanEval tests sometimes call helpers defined in the prompt (`poly` in HumanEval/32, `encode_cyclic` in /38,
`encode_shift` in /50). In a shared namespace the completion can redefine them and so decide its own
verdict; here those helpers (and the prompt's imports) are passed as the tester's trusted `prelude`, while
the entry point is always the solution's.
"""
from __future__ import annotations

import ast
import warnings
from collections.abc import Mapping


def _parse(code: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():          # dataset code may contain e.g. invalid escape sequences
            warnings.simplefilter("ignore")
            return ast.parse(code)
    except SyntaxError:
        return None


def prompt_prelude(prompt: str, entry_point: str) -> str:
    """The prompt's imports and helper definitions, without the entry point itself."""
    tree = _parse(prompt)
    if tree is None:
        return ""
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            keep.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name != entry_point:
            keep.append(node)
    return "\n\n".join(ast.get_source_segment(prompt, n) or "" for n in keep)


def humaneval(problem: Mapping, completion: str) -> tuple[str, dict]:
    """`completion` continues the prompt (HumanEval convention): the program is prompt + completion."""
    entry = problem["entry_point"]
    tests = {"kind": "assert", "source": f"{problem['test']}\ncheck({entry})\n"}
    prelude = prompt_prelude(problem["prompt"], entry)
    if prelude:
        tests["prelude"] = prelude
    return problem["prompt"] + completion, tests


def defined_functions(code: str) -> list[str]:
    """Names of the top-level functions and classes a (reference) program defines."""
    tree = _parse(code)
    if tree is None:
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def mbpp(problem: Mapping, code: str) -> tuple[str, dict]:
    """MBPP tests call the function by name; the names the reference solution defines are the entry points
    (needed when one shadows a built-in, as MBPP/126's `sum` does)."""
    lines = list(problem.get("test_imports") or []) + list(problem["test_list"])
    tests: dict = {"kind": "assert", "source": "\n".join(lines) + "\n"}
    entry = defined_functions(problem.get("code", ""))
    if entry:
        tests["entry_points"] = entry
    return code, tests


def stdio(inputs: list[str], outputs: list[str], code: str, float_tol: float | None = None) -> tuple[str, dict]:
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    tests: dict = {"kind": "stdio", "cases": [{"input": i, "output": o} for i, o in zip(inputs, outputs)]}
    if float_tol is not None:
        tests["float_tol"] = float_tol
    return code, tests
