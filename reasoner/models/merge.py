"""Linear weight averaging of checkpoints of one architecture: `reasoner merge A B --weights 0.5 0.5 --out C`.

Kimi k1.5's long2short "model merging": averaging a long-CoT model and a short-CoT one gives a model in between
(Team Kimi 2025, §2.4); any number of checkpoints and any weights work (`C = Σ w_i · θ_i`, weights are not
normalised: give them summing to 1 for an average). Every parameter and buffer is averaged in float64 and cast
back to the first model's dtype; the first model's config and tokenizer are saved with the result, which loads
with `from_pretrained`. Models whose architectures, parameter names or shapes differ are refused, naming the
first difference.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from reasoner.errors import ReasonerError
from reasoner.models.loading import ModelConfig, load_model, load_tokenizer


class MergeError(ReasonerError, ValueError):
    """The checkpoints cannot be averaged (different architectures, names or shapes) or the weights are bad."""


def merge_models(paths: Sequence[str], weights: Sequence[float], out: str | Path) -> Path:
    """`Σ w_i · θ_i` of the checkpoints at `paths`, saved (with the first one's tokenizer) to `out`."""
    if len(paths) < 2:
        raise MergeError("merge needs at least two checkpoints")
    if len(weights) != len(paths):
        raise MergeError(f"{len(paths)} checkpoints but {len(weights)} weights: give one weight per checkpoint")
    first = load_model(ModelConfig(path=str(paths[0]), device="cpu"), trainable=False)
    total = {k: float(weights[0]) * v.double() for k, v in first.state_dict().items()}
    for path, weight in zip(paths[1:], weights[1:]):
        other = load_model(ModelConfig(path=str(path), device="cpu"), trainable=False)
        _check_compatible(first, other, str(paths[0]), str(path))
        for key, value in other.state_dict().items():
            total[key] += float(weight) * value.double()
        del other
    state = first.state_dict()
    first.load_state_dict({k: total[k].to(state[k].dtype) for k in state})
    out = Path(out)
    first.save_pretrained(out, safe_serialization=True)
    load_tokenizer(str(paths[0])).save_pretrained(out)
    return out


def _check_compatible(a: torch.nn.Module, b: torch.nn.Module, name_a: str, name_b: str) -> None:
    arch_a, arch_b = getattr(a.config, "architectures", None), getattr(b.config, "architectures", None)
    if arch_a != arch_b:
        raise MergeError(f"{name_b} is a {arch_b} model, {name_a} a {arch_a}: only one architecture can be merged")
    sa, sb = a.state_dict(), b.state_dict()
    if set(sa) != set(sb):
        key = sorted(set(sa) ^ set(sb))[0]
        raise MergeError(f"{name_a} and {name_b} have different parameters (e.g. '{key}')")
    for key in sa:
        if sa[key].shape != sb[key].shape:
            raise MergeError(f"parameter '{key}' is {tuple(sa[key].shape)} in {name_a} but {tuple(sb[key].shape)} "
                             f"in {name_b}")
