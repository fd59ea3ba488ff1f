"""One progress bar for every long loop (GRPO steps, SFT steps, problems sampled in eval and distillation)."""
from __future__ import annotations


def progress_bar(enabled: bool, *, total: int, initial: int = 0, desc: str, unit: str = "it"):
    """A tqdm bar, or None when `enabled` is false (callers guard `update` / `close` with `if bar`)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
