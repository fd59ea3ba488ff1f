"""A dense toy reward for runs on a randomly initialised model, registered as the verifier `ascii_share`.

The tiny test model emits byte soup that no real verifier rewards, so every group would have zero reward
variance and GRPO would never update. The share of ASCII letters and digits in a completion varies from sample
to sample and gives every step real, non-zero advantages.
"""
from __future__ import annotations

from reasoner_verifiers import registry
from reasoner_verifiers.types import SCORED, Score, Verifier


class AsciiShare(Verifier):
    name = "ascii_share"

    def score(self, completion: str, example) -> Score:
        share = sum(ch.isascii() and ch.isalnum() for ch in completion) / max(len(completion), 1)
        return Score(value=share, status=SCORED)


def register() -> None:
    if "ascii_share" not in registry.available():
        registry.register("ascii_share", lambda options: AsciiShare())


TOY_REWARD = "reward.verifiers={ascii_share: {weight: 1.0}, math: {weight: 1.0}}"
