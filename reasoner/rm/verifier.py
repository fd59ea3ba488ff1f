"""The `reward_model` reward: a trained sequence-scoring model as a verifier of `reward.verifiers`.

    reward:
      verifiers:
        reward_model: {weight: 1.0, path: runs/rm/model, batch_size: 64, device: cpu}
        math: {weight: 0.0}        # weight 0: logged (pass@1) but not part of the reward

`score_batch` encodes each `(example, completion)` as `reasoner rm` encoded its training pairs (`rm/data.py`,
with the prompt settings saved in the model's `reward_model.json` unless overridden), scores them in batches
of `batch_size` on its own device, and returns `Score(value, "scored")` with the raw score (or its sigmoid,
`transform: sigmoid`, the Bradley-Terry probability of beating a zero-score answer). The verifiers package
stays torch-free: this module is on the reasoner side and registers itself into the verifier registry
(`register()`, called by `reasoner.training.rewards.reward_spec_for`), so it composes with math / code /
format by name and is logged per verifier like them.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoner_verifiers import Score, registry
from reasoner_verifiers.types import SCORED, Verifier, check_batch, parse_options

NAME = "reward_model"
TRANSFORMS = ("none", "sigmoid")


@dataclass
class RewardModelOptions:
    path: str = ""                    # a `reasoner rm` model folder (or any 1-label sequence classifier)
    batch_size: int = 32
    device: str = "auto"              # its own device: auto | cpu | cuda | cuda:1 ...
    dtype: str = "float32"
    max_length: int = 1024
    transform: str = "none"           # none | sigmoid
    template: str | None = None       # prompt rendering; null -> the one it was trained with (reward_model.json)

    def validate(self, owner: str) -> None:
        if not self.path:
            raise ValueError(f"{owner}: option 'path' (the reward model's folder) is required")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"{owner}: transform must be one of {', '.join(TRANSFORMS)}, got {self.transform!r}")
        if self.batch_size < 1:
            raise ValueError(f"{owner}: batch_size must be >= 1, got {self.batch_size}")


class RewardModelVerifier(Verifier):
    name = NAME

    def __init__(self, options: RewardModelOptions):
        from reasoner.data.templates import PromptConfig
        from reasoner.models import ModelConfig, load_tokenizer
        from reasoner.models.value import load_reward_model

        self.options = options
        info_file = Path(options.path) / "reward_model.json"
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        prompt = dict(info.get("prompt", {}))
        if options.template is not None:
            prompt["template"] = options.template
        self.prompt = PromptConfig(**prompt)
        self.tokenizer = load_tokenizer(options.path)
        self.model = load_reward_model(ModelConfig(path=options.path, dtype=options.dtype, device=options.device),
                                       trainable=False)

    def score(self, completion: str, example: Mapping[str, Any]) -> Score:
        return self.score_batch([completion], [example])[0]

    def score_batch(self, completions: Sequence[str], examples: Sequence[Mapping[str, Any]]) -> list[Score]:
        import torch

        from reasoner.models.value import sequence_scores
        from reasoner.rm.data import encode

        check_batch(completions, examples)
        seqs = [encode(self.tokenizer, ex, c, self.prompt, self.options.max_length)[0]
                for c, ex in zip(completions, examples)]
        device = next(self.model.parameters()).device
        out: list[Score] = []
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():
            for start in range(0, len(seqs), self.options.batch_size):
                part = seqs[start:start + self.options.batch_size]
                width = max(len(s) for s in part)
                ids = torch.full((len(part), width), pad, dtype=torch.long)
                mask = torch.zeros((len(part), width), dtype=torch.long)
                for i, s in enumerate(part):
                    ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
                    mask[i, :len(s)] = 1
                scores = sequence_scores(self.model, ids.to(device), mask.to(device))
                if self.options.transform == "sigmoid":
                    scores = torch.sigmoid(scores)
                out += [Score(value=float(v), status=SCORED, details={}) for v in scores.tolist()]
        return out


def register() -> None:
    """Add `reward_model` to the verifier registry (once; later calls do nothing)."""
    if NAME not in registry.available():
        registry.register(NAME, lambda options: RewardModelVerifier(
            parse_options(RewardModelOptions, options, NAME)))
