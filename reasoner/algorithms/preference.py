"""Preference losses (the DPO family) as pure functions over the summed log-probs of response pairs.

Shapes: `B` pairs (a prompt `x`, a chosen answer `y_w`, a rejected one `y_l`). Every input is `[B]`: the log-prob
of a whole response (summed over its tokens) under the policy (gradient flows) and under the frozen reference
(a constant), and the response lengths in tokens. With the log-ratios `c = log π(y_w) − log π_ref(y_w)` and
`r = log π(y_l) − log π_ref(y_l)` and `z = c − r`:

- `sigmoid` (DPO, Rafailov et al. 2023, eq. 7; conservative DPO's label smoothing ε, Mitchell 2023):
  `−(1 − ε) log σ(β z) − ε log σ(−β z)`.
  `dpop_lambda` λ > 0 adds the DPO-Positive penalty (Pal et al. 2024, "Smaug", eq. 3):
  `z ← z − λ · max(0, −c)`: nothing while the chosen answer is at least as likely as under the reference, and
  a push up on it once it falls below, which plain DPO allows (both likelihoods fall, the margin still grows).
- `ipo` (Azar et al. 2023, eq. 17): `(z' − 1/(2β))²` with `z'` from log-probs averaged over each response's
  tokens (TRL normalises by length for IPO, with the IPO authors' agreement; so do we).

`preference_loss` adds the optional SFT term on the chosen answers (`sft_weight`: RPO's `α · NLL(y_w)`, the mean
token negative log-likelihood) and divides by global counts, so micro-batches and ranks add up to the batch's
mean. Equality to TRL's `DPOTrainer.dpo_loss` (v0.28, `trl/trainer/dpo_trainer.py`) is tested in float64.
The implicit rewards logged are `β c` and `β r` (TRL's `rewards/chosen`, `rewards/rejected`), from summed
log-probs for every loss.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from reasoner.algorithms.registry import Registry


@dataclass
class PairLogps:
    """Summed response log-probs of `B` preference pairs."""

    chosen: Tensor            # [B] Σ_t log π_θ(y_w,t | x, y_w,<t) (gradient flows)
    rejected: Tensor          # [B] the same for y_l
    ref_chosen: Tensor        # [B] under the reference policy (treated as constants)
    ref_rejected: Tensor      # [B]
    chosen_tokens: Tensor     # [B] response tokens of y_w (IPO's length normalisation)
    rejected_tokens: Tensor   # [B]

    def __post_init__(self) -> None:
        shapes = {tuple(t.shape) for t in (self.chosen, self.rejected, self.ref_chosen, self.ref_rejected,
                                           self.chosen_tokens, self.rejected_tokens)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"PairLogps fields must all be [B]; got shapes {sorted(shapes)}")

    def logratios(self) -> tuple[Tensor, Tensor]:
        """`(c, r)`: policy minus reference log-prob of the chosen and the rejected answers, `[B]` each."""
        dtype = torch.promote_types(self.chosen.dtype, torch.float32)
        c = self.chosen.to(dtype) - self.ref_chosen.detach().to(dtype)
        r = self.rejected.to(dtype) - self.ref_rejected.detach().to(dtype)
        return c, r


PreferenceFn = Callable[..., Tensor]
PREFERENCE_LOSSES: Registry[PreferenceFn] = Registry("preference loss")


@PREFERENCE_LOSSES.register("sigmoid")
def dpo_sigmoid(pairs: PairLogps, *, beta: float, label_smoothing: float = 0.0,
                dpop_lambda: float = 0.0) -> Tensor:
    """DPO's logistic loss per pair `[B]`, with label smoothing and the DPO-Positive penalty (module docstring)."""
    c, r = pairs.logratios()
    z = c - r
    if dpop_lambda:
        z = z - dpop_lambda * torch.clamp(-c, min=0.0)
    return -(1.0 - label_smoothing) * F.logsigmoid(beta * z) - label_smoothing * F.logsigmoid(-beta * z)


@PREFERENCE_LOSSES.register("ipo")
def ipo(pairs: PairLogps, *, beta: float) -> Tensor:
    """IPO's squared loss per pair `[B]` on per-token averaged log-ratios; `beta` is the paper's τ."""
    c, r = pairs.logratios()
    z = c / pairs.chosen_tokens.clamp(min=1).to(c.dtype) - r / pairs.rejected_tokens.clamp(min=1).to(r.dtype)
    return (z - 1.0 / (2.0 * beta)) ** 2


@dataclass
class PreferenceStats:
    """Detached per-pair numbers for logging (sum them over micro-batches and ranks, then divide by pairs)."""

    rewards_chosen: Tensor     # [B] β (log π(y_w) − log π_ref(y_w))
    rewards_rejected: Tensor   # [B] β (log π(y_l) − log π_ref(y_l))
    logps_chosen: Tensor       # [B] Σ log π(y_w)
    logps_rejected: Tensor     # [B] Σ log π(y_l)
    losses: Tensor             # [B] the preference loss per pair (without the SFT term)

    def sums(self) -> dict[str, float]:
        """Sums over the pairs, keyed by the names the trainer logs (divide by the number of pairs)."""
        margin = self.rewards_chosen - self.rewards_rejected
        return {"rewards/chosen": float(self.rewards_chosen.sum()),
                "rewards/rejected": float(self.rewards_rejected.sum()),
                "rewards/margin": float(margin.sum()),
                "rewards/accuracy": float((margin > 0).to(torch.float64).sum()),
                "logps/chosen": float(self.logps_chosen.sum()),
                "logps/rejected": float(self.logps_rejected.sum()),
                "loss/preference": float(self.losses.sum())}


def preference_loss(name: str, pairs: PairLogps, *, num_pairs: float, options: Mapping[str, Any],
                    sft_weight: float = 0.0, num_chosen_tokens: float = 1.0) -> tuple[Tensor, PreferenceStats]:
    """`Σ_pairs loss_name / num_pairs + sft_weight · (−Σ log π(y_w)) / num_chosen_tokens` and its statistics.

    Args:
        name: a `PREFERENCE_LOSSES` name (`sigmoid`, `ipo`).
        pairs: this micro-batch's pairs.
        num_pairs: pairs in the whole optimizer step (all micro-batches and ranks): the mean's divisor.
        options: values to pick the loss's hyperparameters from by name (e.g. `vars(cfg.loss)`).
        sft_weight: weight α of the SFT term on the chosen answers (0: off).
        num_chosen_tokens: chosen-response tokens in the whole step: the SFT term's divisor (a token mean,
            as TRL's `nll_loss` is).
    """
    fn = PREFERENCE_LOSSES.get(name)
    losses = fn(pairs, **PREFERENCE_LOSSES.pick_options(name, options))
    loss = losses.sum() / num_pairs
    if sft_weight:
        loss = loss + sft_weight * (-pairs.chosen.to(loss.dtype).sum()) / num_chosen_tokens
    c, r = pairs.logratios()
    beta = float(options["beta"])
    stats = PreferenceStats(rewards_chosen=(beta * c).detach(), rewards_rejected=(beta * r).detach(),
                            logps_chosen=pairs.chosen.detach(), logps_rejected=pairs.rejected.detach(),
                            losses=losses.detach())
    return loss, stats


PAIR_RULES = ("best_worst", "all", "short_long")


def pair_indices(rewards: Tensor, lengths: Tensor, groups: Tensor, *, rule: str = "best_worst",
                 max_pairs_per_group: int = 0, generator: torch.Generator | None = None) -> Tensor:
    """Preference pairs among answers to the same prompt, as `[K, 2]` indices (chosen, rejected) into `[N]`.

    Args:
        rewards: `[N]` scores (a verifier total: for a binary grader, correct = 1).
        lengths: `[N]` response tokens (tie-breaks; the `short_long` rule).
        groups: `[N]` prompt ids (answers to one prompt share one; any order, ragged groups allowed).
        rule: `best_worst` — the highest reward against the lowest (ties: the lowest index, i.e. a uniform
            pick among i.i.d. samples, so the pairs carry no length bias); `all` — every pair with a higher
            reward against a lower one (for a binary grader every correct x incorrect); `short_long` — Kimi
            k1.5's long2short pairs: the shortest of the best answers against the longest answer longer than
            it (correct or not).
        max_pairs_per_group: > 0 keeps a random subset of that many pairs per group (`generator` seeds it).

    A group with no contrast (all rewards equal; for `short_long`, no longer answer) gives no pair.
    """
    if rule not in PAIR_RULES:
        raise ValueError(f"pair rule must be one of {', '.join(PAIR_RULES)}; got {rule!r}")
    if not (rewards.shape == lengths.shape == groups.shape) or rewards.dim() != 1:
        raise ValueError("pair_indices: rewards, lengths and groups must all be [N]")
    out: list[Tensor] = []
    for g in torch.unique(groups, sorted=True):
        idx = torch.nonzero(groups == g).flatten()
        pairs = _group_pairs(rewards[idx].double(), lengths[idx].long(), rule)
        if max_pairs_per_group > 0 and len(pairs) > max_pairs_per_group:
            keep = torch.randperm(len(pairs), generator=generator)[:max_pairs_per_group].sort().values
            pairs = pairs[keep]
        out.append(idx[pairs])
    return torch.cat(out) if out else torch.zeros(0, 2, dtype=torch.long)


def _group_pairs(r: Tensor, n: Tensor, rule: str) -> Tensor:
    """`[k, 2]` local indices of one group's pairs (see `pair_indices`)."""
    order = torch.arange(len(r))
    if rule == "all":
        chosen, rejected = torch.nonzero(r[:, None] > r[None, :], as_tuple=True)
        return torch.stack([chosen, rejected], 1)
    best = order[r == r.max()]
    if rule == "best_worst":
        if r.max() == r.min():
            return torch.zeros(0, 2, dtype=torch.long)
        # ties: the lowest index, a uniform pick among i.i.d. samples (no bias towards short or long answers)
        chosen, rejected = best[0], order[r == r.min()][0]
    else:
        chosen = best[torch.argmin(n[best] * len(r) + best)]      # the shortest best, lowest index on ties
        longer = order[n > n[chosen]]
        if len(longer) == 0:
            return torch.zeros(0, 2, dtype=torch.long)
        rejected = longer[torch.argmax(n[longer] * len(r) - longer)]
    return torch.tensor([[int(chosen), int(rejected)]])
