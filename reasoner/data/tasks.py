"""Built-in synthetic tasks with worked solutions in the R1 format, for the offline demo and tests.

`arithmetic`: multi-digit addition and multiplication by one digit, solved column by column inside `<think>`
(the carry written out at each step) with the result in `<answer>`. A problem goes to the test split when a
stable hash of it says so, so train and test never share a problem whatever the seeds.
"""
from __future__ import annotations

import random
import zlib
from collections.abc import Callable


def _is_test(key: str) -> bool:
    return zlib.crc32(key.encode()) % 8 == 0


def _add_steps(a: int, b: int) -> list[str]:
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        s = x + y + carry
        terms = f"{x}+{y}" + (f"+{carry}" if carry else "")
        carry = s // 10
        steps.append(f"{terms}={s}, write {s % 10}" + (f" carry {carry}" if carry else ""))
    if carry:
        steps.append(f"write {carry}")
    return steps


def _mul_steps(a: int, d: int) -> list[str]:
    steps, carry = [], 0
    for ch in str(a)[::-1]:
        p = int(ch) * d + carry
        terms = f"{ch}*{d}" + (f"+{carry}" if carry else "")
        carry = p // 10
        steps.append(f"{terms}={p}, write {p % 10}" + (f" carry {carry}" if carry else ""))
    if carry:
        steps.append(f"write {carry}")
    return steps


def arithmetic_example(rng: random.Random) -> dict:
    if rng.random() < 0.6:
        a, b = (rng.randint(10, 9999) for _ in range(2))
        problem, answer, steps = f"{a} + {b}", a + b, _add_steps(a, b)
    else:
        a, d = rng.randint(10, 9999), rng.randint(2, 9)
        problem, answer, steps = f"{a} * {d}", a * d, _mul_steps(a, d)
    think = "\n".join(steps)
    return {"problem": f"What is {problem}?", "answer": str(answer),
            "response": f"<think>\n{think}\n</think>\n<answer>{answer}</answer>", "key": problem}


def arithmetic(n: int, *, split: str = "train", seed: int = 0) -> list[dict]:
    """`n` distinct problems of `split` (train | test); deterministic for a seed."""
    if split not in ("train", "test"):
        raise ValueError(f"task 'arithmetic' has splits train and test; got '{split}'")
    rng = random.Random(f"arithmetic-{seed}-{split}")
    rows, seen = [], set()
    while len(rows) < n:
        ex = arithmetic_example(rng)
        key = ex.pop("key")
        if key in seen or _is_test(key) != (split == "test"):
            continue
        seen.add(key)
        rows.append({"id": f"{split}-{len(rows)}", **ex})
    return rows


TASKS: dict[str, Callable[..., list[dict]]] = {"arithmetic": arithmetic}
