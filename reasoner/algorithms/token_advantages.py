"""Token-level rewards and the token-level advantage estimators: GAE (with a critic) and REINFORCE++.

Shapes: `N` sequences, `T` response tokens (right-padded), `mask[N, T]` 1.0 on the tokens that carry loss.

Token-level rewards (the PPO-for-LLMs convention of InstructGPT, TRL and verl): every response token `t` gets
`r_t = -kl_beta * kl_t` (the per-token KL of the sampling policy from the reference, "KL in the reward"), and
the sequence reward (verifiers, reward model, shaping) is added to the last token that carries loss:
`r_T += R(seq)`. A row with no loss-carrying token (empty or masked out) gets no reward: it trains nothing.

Estimators (registered in `ADVANTAGE_ESTIMATORS` as token-level; positional inputs, keyword options):

- `gae(token_rewards, values, mask, *, gamma, lam, whiten_advantages, whiten_rewards)`: Generalized Advantage
  Estimation (Schulman et al. 2015) over a critic's `values[N, T] = V(s_t)` (the state before token `t`);
  `delta_t = r_t + gamma * V_{t+1} - V_t`, `A_t = delta_t + gamma * lam * A_{t+1}`, `V` and `A` past the last
  token are 0, and positions with mask 0 are skipped (the next value and advantage carry over them), as verl's
  `compute_gae_advantage_return` does. The critic's regression targets are `returns = A + V` (before whitening).
- `reinforce_pp(token_rewards, mask, *, gamma, whiten_advantages)`: REINFORCE++ (Hu 2025) without a critic: the
  discounted return-to-go `G_t = r_t + gamma * G_{t+1}`, restarted at masked positions, whitened over the
  batch's tokens; as verl's `compute_reinforce_plus_plus_outcome_advantage`. (`reinforce_pp_baseline`, in
  `advantages.py`, is the sequence-level variant with a group baseline and no per-token rewards.)

Whitening (`masked_whiten`) is over every loss-carrying token of the whole step (every rank calls the estimator
on the same gathered batch), with verl's formula: `(x - mean) / sqrt(var + 1e-8)`, Bessel-corrected variance.
Arithmetic runs in float64; results are float32 with exact zeros on masked positions.
"""
from __future__ import annotations

import torch
from torch import Tensor

from reasoner.algorithms.advantages import ADVANTAGE_ESTIMATORS, TOKEN_LEVEL_ESTIMATORS, register_token_level

WHITEN_EPS = 1e-8  # verl's masked_whiten: rsqrt(var + 1e-8)


def token_level_rewards(rewards: Tensor, mask: Tensor, *, kl: Tensor | None = None, kl_beta: float = 0.0) -> Tensor:
    """`[N, T]` float64 token rewards: `-kl_beta * kl` on loss-carrying tokens, `rewards[i]` added on row i's last.

    Args:
        rewards: `[N]` sequence rewards (totals after shaping).
        mask: `[N, T]` 1.0 on tokens that carry loss.
        kl: `[N, T]` per-token KL estimates (detached here), or None for no KL term.
        kl_beta: the KL coefficient.
    """
    if mask.dim() != 2 or rewards.shape != mask.shape[:1]:
        raise ValueError(f"expected rewards [N] and mask [N, T]; got {tuple(rewards.shape)} and {tuple(mask.shape)}")
    live = mask.to(torch.float64) != 0
    out = torch.zeros(mask.shape, dtype=torch.float64, device=mask.device)
    if kl is not None and kl_beta != 0:
        if kl.shape != mask.shape:
            raise ValueError(f"kl {tuple(kl.shape)} and mask {tuple(mask.shape)} differ in shape")
        out = torch.where(live, -kl_beta * kl.detach().to(torch.float64), out)
    positions = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)
    last = torch.where(live, positions, -1).amax(dim=1)          # [N] index of the last live token, -1 if none
    rows = (last >= 0).nonzero().flatten()
    out[rows, last[rows]] += rewards.detach().to(mask.device, torch.float64)[rows]
    return out


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / (mask.sum() + WHITEN_EPS)


def masked_whiten(x: Tensor, mask: Tensor, *, shift_mean: bool = True) -> Tensor:
    """`(x - mean) / sqrt(var + 1e-8)` over the masked entries (unbiased variance), as verl's `masked_whiten`;
    `shift_mean=False` adds the mean back (TRL's reward whitening). Fewer than two masked entries, or zero
    variance: returned unscaled and uncentred (zeros when `shift_mean`), never `x / 1e-4` noise."""
    mask = mask.to(x.dtype)
    n = mask.sum()
    live = x[mask != 0]
    if n < 2 or live.amax() == live.amin():
        return torch.zeros_like(x) if shift_mean else x.clone()
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask) * n / (n - 1)
    whitened = (x - mean) * torch.rsqrt(var + WHITEN_EPS)
    return whitened if shift_mean else whitened + mean


@register_token_level("gae", needs_values=True)
def gae_advantages(token_rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float = 1.0, lam: float = 1.0,
                   whiten_advantages: bool = True, whiten_rewards: bool = False) -> tuple[Tensor, Tensor]:
    """GAE over `token_rewards[N, T]` and the critic's `values[N, T]` (module docstring); returns
    `(advantages [N, T], returns [N, T])`, float64. `whiten_rewards`: TRL's option, token rewards whitened
    (mean kept) before the recursion."""
    m = mask.to(torch.float64)
    r = token_rewards.to(torch.float64)
    v = values.detach().to(torch.float64)
    if whiten_rewards:
        r = masked_whiten(r, m, shift_mean=False) * m
    next_value = torch.zeros(r.shape[0], dtype=torch.float64, device=r.device)
    last_gae = torch.zeros_like(next_value)
    advantages = torch.zeros_like(r)
    for t in reversed(range(r.shape[1])):
        delta = r[:, t] + gamma * next_value - v[:, t]
        candidate = delta + gamma * lam * last_gae
        live = m[:, t]
        next_value = v[:, t] * live + (1 - live) * next_value   # masked positions are skipped
        last_gae = candidate * live + (1 - live) * last_gae
        advantages[:, t] = last_gae
    returns = (advantages + v) * m
    if whiten_advantages:
        advantages = masked_whiten(advantages, m)
    return advantages * m, returns


@register_token_level("reinforce_pp", needs_values=False)
def reinforce_pp_advantages(token_rewards: Tensor, mask: Tensor, *, gamma: float = 1.0,
                            whiten_advantages: bool = True) -> tuple[Tensor, Tensor]:
    """REINFORCE++: discounted returns-to-go of `token_rewards[N, T]`, restarted at masked positions, whitened
    over the batch's tokens; returns `(advantages [N, T], returns [N, T])`, float64."""
    m = mask.to(torch.float64)
    r = token_rewards.to(torch.float64)
    returns = torch.zeros_like(r)
    running = torch.zeros(r.shape[0], dtype=torch.float64, device=r.device)
    for t in reversed(range(r.shape[1])):
        running = r[:, t] + gamma * running
        returns[:, t] = running
        running = running * m[:, t]
    advantages = masked_whiten(returns, m) if whiten_advantages else returns
    return advantages * m, returns * m


def compute_token_advantages(name: str, token_rewards: Tensor, mask: Tensor, *, values: Tensor | None = None,
                             **options: object) -> tuple[Tensor, Tensor]:
    """`(advantages [N, T], returns [N, T])`, float32, with the token-level estimator `name`.

    Args:
        token_rewards: `[N, T]` (see `token_level_rewards`).
        mask: `[N, T]` 1.0 on tokens that carry loss.
        values: `[N, T]` the critic's V(s_t), for estimators that need a critic (gae); else None.
        **options: the estimator's options (`gamma`, `lam`, `whiten_advantages`, ...); others are an error.
    """
    fn = ADVANTAGE_ESTIMATORS.get(name)
    if name not in TOKEN_LEVEL_ESTIMATORS:
        raise ValueError(f"advantage estimator {name!r} is sequence-level: use compute_advantages")
    unknown = sorted(set(options) - set(ADVANTAGE_ESTIMATORS.option_names(name)))
    if unknown:
        raise ValueError(f"advantage estimator {name!r} takes no option {unknown[0]!r} "
                         f"(its options: {', '.join(ADVANTAGE_ESTIMATORS.option_names(name))})")
    if token_rewards.dim() != 2 or token_rewards.shape != mask.shape:
        raise ValueError(f"expected token_rewards and mask [N, T]; got {tuple(token_rewards.shape)} and "
                         f"{tuple(mask.shape)}")
    if not bool(torch.isfinite(token_rewards).all()):
        raise ValueError("token_rewards has non-finite entries")
    if TOKEN_LEVEL_ESTIMATORS[name]:
        if values is None or values.shape != mask.shape:
            raise ValueError(f"advantage estimator {name!r} needs the critic's values [N, T] "
                             f"{tuple(mask.shape)}, got {None if values is None else tuple(values.shape)}")
        advantages, returns = fn(token_rewards, values, mask, **options)
    else:
        advantages, returns = fn(token_rewards, mask, **options)
    return advantages.to(torch.float32), returns.to(torch.float32)
