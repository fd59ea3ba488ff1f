"""Built-in synthetic tasks with worked solutions in the R1 format, for the offline demo and tests.

`arithmetic`: chains of 3-6 one-digit additions, summed left to right inside `<think>` (every partial sum
written out) with the result in `<answer>`. Each step only needs the partial sum just written and the next
operand, which keeps the task learnable by a model of a few million parameters in a minute of CPU training.
A problem goes to the test split when a stable hash of it says so, so train and test never share a problem
whatever the seeds.
"""
from __future__ import annotations

import random
import zlib
from collections.abc import Callable


def _is_test(key: str) -> bool:
    return zlib.crc32(key.encode()) % 8 == 0


def arithmetic_example(rng: random.Random, min_terms: int = 3, max_terms: int = 6, max_value: int = 9) -> dict:
    """A chain of additions, summed left to right with every partial sum written out inside `<think>`."""
    terms = [rng.randint(1, max_value) for _ in range(rng.randint(min_terms, max_terms))]
    steps, total = [], terms[0]
    for t in terms[1:]:
        steps.append(f"{total}+{t}={total + t}")
        total += t
    think = "\n".join(steps)
    problem = " + ".join(map(str, terms))
    return {"problem": f"What is {problem}?", "answer": str(total),
            "response": f"<think>\n{think}\n</think>\n<answer>{total}</answer>", "key": problem,
            "difficulty": len(terms)}


def arithmetic(n: int, *, split: str = "train", seed: int = 0, terms: list[int] | None = None) -> list[dict]:
    """`n` distinct problems of `split` (train | test); deterministic for a seed. `difficulty` is the number of
    terms; `terms` (e.g. [3, 8]: an easy + hard mix) draws that number from the list instead of 3-6."""
    if split not in ("train", "test"):
        raise ValueError(f"task 'arithmetic' has splits train and test; got '{split}'")
    rng = random.Random(f"arithmetic-{seed}-{split}")
    rows, seen = [], set()
    while len(rows) < n:
        if terms:
            k = rng.choice(list(terms))
            ex = arithmetic_example(rng, k, k)
        else:
            ex = arithmetic_example(rng)
        key = ex.pop("key")
        if key in seen or _is_test(key) != (split == "test"):
            continue
        seen.add(key)
        rows.append({"id": f"{split}-{len(rows)}", **ex})
    return rows


def with_direct_answers(rows: list[dict], fraction: float, *, seed: int = 0) -> list[dict]:
    """A copy of `rows` in which a random `fraction` answer at once: an empty `<think>`, then the answer.

    Cold-start data that mixes both habits leaves the decision "work it out or answer at once" to the model; RL
    then has to find out that working it out pays (the demo's story: pass@1 and response length rise together).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1]; got {fraction}")
    rng = random.Random(f"direct-{seed}")
    return [dict(r, response=f"<think>\n</think>\n<answer>{r['answer']}</answer>") if rng.random() < fraction else r
            for r in rows]


def arithmetic_task(n: int, *, split: str = "train", seed: int = 0, direct_fraction: float = 0.0,
                    terms: list[int] | None = None) -> list[dict]:
    """The `arithmetic` task as a data source: `direct_fraction` of the rows answer at once (`with_direct_answers`;
    the demo's cold-start mix, `data.task_options: {direct_fraction: 0.5}`); `terms` picks the chain lengths
    (`data.task_options: {terms: [3, 8]}`: easy and hard problems)."""
    rows = arithmetic(n, split=split, seed=seed, terms=terms)
    return with_direct_answers(rows, direct_fraction, seed=seed) if direct_fraction else rows


PREFERENCE_KINDS = ("slip", "bare", "mistyped")


def arithmetic_preferences(n: int, *, split: str = "train", seed: int = 0,
                           kinds: tuple[str, ...] | list[str] = PREFERENCE_KINDS) -> list[dict]:
    """Preference pairs on the `arithmetic` problems (a reward model's training data, `reasoner rm`): `chosen`
    is the correct worked solution, `rejected` a wrong answer to the same problem, of a kind drawn from `kinds`:

    - `slip`: one partial sum off by 1-3, the later steps carried on from it: a consistent chain, wrong total;
    - `bare`: an empty `<think>` and a wrong answer (off by 1-5);
    - `mistyped`: the correct chain, then an `<answer>` that differs from its last partial sum by 1-5.
    Every chosen answer is right and every rejected one wrong (the math verifier agrees); `kind` says which."""
    unknown = sorted(set(kinds) - set(PREFERENCE_KINDS))
    if unknown or not kinds:
        raise ValueError(f"arithmetic_preferences: kinds must be a non-empty subset of {PREFERENCE_KINDS}")
    rng = random.Random(f"preferences-{seed}-{split}")
    rows = []
    for row in arithmetic(n, split=split, seed=seed):
        terms = [int(t) for t in row["problem"][len("What is "):-1].split(" + ")]
        kind = rng.choice(list(kinds))
        off = rng.choice([-1, 1]) * rng.randint(1, 3 if kind == "slip" else 5)
        if int(row["answer"]) + off < 0 or terms[0] + terms[1] + off < 0:
            off = abs(off)  # no negative numbers: the task never writes one
        if kind == "bare":
            rejected = f"<think>\n</think>\n<answer>{int(row['answer']) + off}</answer>"
        else:
            wrong_at = rng.randrange(1, len(terms)) if kind == "slip" else len(terms)
            steps, total = [], terms[0]
            for i, t in enumerate(terms[1:], 1):
                shown = total + t + (off if i == wrong_at else 0)
                steps.append(f"{total}+{t}={shown}")
                total = shown
            answer = total + off if kind == "mistyped" else total
            rejected = "<think>\n" + "\n".join(steps) + f"\n</think>\n<answer>{answer}</answer>"
        rows.append({"id": row["id"], "problem": row["problem"], "answer": row["answer"], "chosen": row["response"],
                     "rejected": rejected, "kind": kind})
    return rows


TASKS: dict[str, Callable[..., list[dict]]] = {"arithmetic": arithmetic_task,
                                               "arithmetic_preferences": arithmetic_preferences}


def make_task_rows(name: str, n: int, *, split: str, seed: int, **options) -> list[dict]:
    """Rows of built-in task `name`; an option the task does not take is an error naming it and the valid ones."""
    import inspect

    fn = TASKS[name]
    valid = [p.name for p in inspect.signature(fn).parameters.values()
             if p.kind is p.KEYWORD_ONLY and p.name not in ("split", "seed")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        from reasoner.config import ConfigError
        raise ConfigError(f"data.task_options: task '{name}' has no option {unknown[0]!r} (valid: "
                          f"{', '.join(valid) or 'none'})")
    return fn(n, split=split, seed=seed, **options)
