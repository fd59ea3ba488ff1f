"""Gold answers as datasets store them, read into the answer the judge compares with.

- `plain` (default): the gold is the answer as given (`72`, `\\frac{14}{3}`, `(3, \\frac{\\pi}{2})`).
- `gsm8k`: openai/gsm8k's `answer` field is the worked solution followed by `#### 72` (thousands commas
  allowed: `#### 1,000`). The gold is what follows the last `####`, commas removed; a gold without `####` (an
  already-normalised file such as ../shared/data/math/gsm8k_*.jsonl) is used as it is. GSM8K's final
  answers are bare numbers whose unit the question implies, so the judge also stops holding a percent sign
  on the answer against them (`18%` for gold 18: see `CompareConfig.bare_gold`).
"""
from __future__ import annotations

import re

GOLD_FORMATS = ("plain", "gsm8k")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def gold_text(raw: str, gold_format: str = "plain") -> str:
    if gold_format == "plain":
        return raw
    if gold_format == "gsm8k":
        return gsm8k_gold(raw)
    raise ValueError(f"unknown gold_format {gold_format!r}; valid: {', '.join(GOLD_FORMATS)}")


def gsm8k_gold(raw: str) -> str:
    """`"Natalia sold 48/2 = 24 clips...\\n#### 72"` -> `"72"`; `"#### 1,000"` -> `"1000"`; `"72"` -> `"72"`."""
    cut = raw.rfind("####")
    text = raw[cut + 4 :] if cut >= 0 else raw
    return _THOUSANDS.sub("", text.strip())
