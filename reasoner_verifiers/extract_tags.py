"""Tag helpers shared by the format and language rewards."""
from __future__ import annotations


def think_content(completion: str, tag: str = "think", prefilled: bool = False) -> str | None:
    """The text inside the first `<think>…</think>` block (from the start when the prompt prefilled `<think>`).

    A block that was opened but never closed (a truncated completion) still has a thought: everything after
    the opening tag. None when there is no thought at all.
    """
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    start = 0 if prefilled else completion.find(open_tag)
    if start < 0:
        return None
    if not prefilled:
        start += len(open_tag)
    end = completion.find(close_tag, start)
    return completion[start:] if end < 0 else completion[start:end]
