"""Which prompts each step trains on: a seeded permutation per epoch, with a resumable position."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class SamplerState:
    epoch: int = 0
    position: int = 0


class PromptSampler:
    """Yields batches of prompt indices; epoch e uses permutation(seed + e), so state = (epoch, position)."""

    def __init__(self, num_prompts: int, seed: int, state: SamplerState | None = None):
        if num_prompts < 1:
            raise ValueError("the prompt dataset is empty")
        self.num_prompts = num_prompts
        self.seed = seed
        self.state = state or SamplerState()

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_prompts, generator=g).tolist()

    def next_batch(self, size: int) -> list[int]:
        out: list[int] = []
        while len(out) < size:
            order = self._order(self.state.epoch)
            take = order[self.state.position:self.state.position + size - len(out)]
            out.extend(take)
            self.state.position += len(take)
            if self.state.position >= self.num_prompts:
                self.state = SamplerState(self.state.epoch + 1, 0)
        return out

    def state_dict(self) -> dict:
        return asdict(self.state)

    def load_state_dict(self, state: dict) -> None:
        self.state = SamplerState(**state)
