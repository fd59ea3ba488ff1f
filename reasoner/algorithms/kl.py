"""Per-token estimators of KL(pi || pi_ref) from samples of pi, and the "KL in the reward" mode.

With `log r = ref_logprobs - logprobs` at tokens sampled from pi (Schulman, "Approximating KL divergence"):

- `k1 = -log r = logp - ref`: unbiased, high variance, can be negative per token;
- `k2 = (log r)^2 / 2`: biased, low variance, always >= 0;
- `k3 = (r - 1) - log r = exp(ref - logp) - (ref - logp) - 1`: unbiased, low variance, always >= 0 (the GRPO
  paper's estimator; verl's `low_var_kl`).

Inputs are upcast to at least float32. Stability: k3 exponentiates the log-ratio, so the log-ratio is clamped to
[-20, 20] first, as verl clamps its log-ratios (exp(20) ~ 4.9e8 is comfortably finite in float32, and a policy
that far from its reference is broken anyway). Inside the clamp range value and gradient are exact; outside it
the value is capped and the gradient is 0. k1 and k2 are polynomials and are not clamped.

Two ways to use them: as a loss term (the trainer aggregates `beta * kl_penalty(...)` with the policy loss; the
gradient flows through `logprobs`), or in the reward (`apply_kl_to_rewards`, detached, before advantages).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from reasoner.algorithms.registry import Registry

KLFn = Callable[[Tensor], Tensor]
KL_ESTIMATORS: Registry[KLFn] = Registry("KL estimator")

K3_LOG_RATIO_CLAMP = 20.0


def kl_penalty(name: str, logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token KL estimate `[N, T]` (float32 or wider) with estimator `name` (`k1`, `k2`, `k3`).

    Args:
        logprobs: `[N, T]` log-probs of the sampled tokens under the current policy (gradient flows).
        ref_logprobs: `[N, T]` the same under the reference policy (treated as a constant).

    Padded positions are not masked here: mask or aggregate the result with the response mask.
    """
    fn = KL_ESTIMATORS.get(name)
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)} and ref_logprobs {tuple(ref_logprobs.shape)} differ in shape"
        )
    dtype = torch.promote_types(logprobs.dtype, torch.float32)
    delta = logprobs.to(dtype) - ref_logprobs.detach().to(dtype)  # log pi - log pi_ref = -log r
    return fn(delta)


@KL_ESTIMATORS.register("k1")
def kl_k1(delta: Tensor) -> Tensor:
    """`k1 = logp - ref` for `delta = logp - ref`."""
    return delta


@KL_ESTIMATORS.register("k2")
def kl_k2(delta: Tensor) -> Tensor:
    """`k2 = (logp - ref)^2 / 2`."""
    return 0.5 * delta.square()


@KL_ESTIMATORS.register("k3")
def kl_k3(delta: Tensor) -> Tensor:
    """`k3 = exp(ref - logp) - (ref - logp) - 1`, log-ratio clamped to +-20 (see module docstring)."""
    log_r = (-delta).clamp(-K3_LOG_RATIO_CLAMP, K3_LOG_RATIO_CLAMP)
    # expm1 keeps precision when log_r is near 0, where k3 ~ log_r^2 / 2 is a difference of near-equal terms.
    return torch.expm1(log_r) - log_r


def apply_kl_to_rewards(rewards: Tensor, kl: Tensor, mask: Tensor, beta: float) -> Tensor:
    """"KL in the reward" mode: `rewards[i] - beta * sum_t kl[i, t] * mask[i, t]`.

    Args:
        rewards: `[N]` sequence rewards.
        kl: `[N, T]` per-token KL estimates (from `kl_penalty`); detached here, rewards carry no gradient.
        mask: `[N, T]` 1.0 on real response tokens.
        beta: KL coefficient.

    Returns:
        `[N]` penalised rewards in the dtype of `rewards` promoted to at least float32.
    """
    if kl.shape != mask.shape or kl.dim() != 2 or rewards.shape != kl.shape[:1]:
        raise ValueError(
            f"expected rewards [N], kl [N, T], mask [N, T]; got rewards {tuple(rewards.shape)}, "
            f"kl {tuple(kl.shape)}, mask {tuple(mask.shape)}"
        )
    dtype = torch.promote_types(rewards.dtype, torch.float32)
    return rewards.detach().to(dtype) - beta * sequence_kl(kl, mask, dtype)


def sequence_kl(kl: Tensor, mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """`[N]` per-sequence KL: `sum_t kl[i, t] * mask[i, t]` (detached) for `kl`, `mask` `[N, T]`."""
    dtype = torch.promote_types(dtype, kl.dtype)
    return (kl.detach().to(dtype) * mask.to(dtype)).sum(dim=-1)
