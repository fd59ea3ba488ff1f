"""SFT's loss as a module: summed next-token cross-entropy over target tokens, divided by the batch's count.

Two exact paths, as the GRPO trainer's forward (`reasoner.training.logprobs`): the model's own logits (the
reference), or the fused head (`linear_token_logprobs` on the body's hidden states at the target positions), so
neither the `[B, L, V]` logits nor their gradient exist. `fused_head` is None (auto: fused when the logits would
exceed `FUSE_ABOVE_BYTES`), True or False; a head the fused path does not recognise and ZeRO-3 keep the reference.
Being a module, the backends wrap it (DDP's gradient hooks must see the whole forward). The path choice and the
target-token log-probs are functions (`choose_fused_head`, `target_token_logprobs`) that the DPO loss shares.
"""
from __future__ import annotations

import torch

from reasoner.config import ConfigError
from reasoner.training.fused_head import find_output_head, head_token_logprobs, verify_output_head
from reasoner.training.logprobs import FUSE_ABOVE_BYTES


def choose_fused_head(lm: torch.nn.Module, fused_head: bool | None, *, partitioned: bool = False) -> bool | None:
    """`fused_head` as it can apply to `lm`: None (auto) or True when the fused path works, else False (True on a
    model it cannot serve is a config error). Shared by the SFT and DPO losses."""
    if fused_head is False:
        return False
    why = "ZeRO-3 partitions the output head outside its own forward" if partitioned else None
    if why is None:
        try:
            verify_output_head(lm)
        except NotImplementedError as e:
            why = str(e)
    if why is None:
        return fused_head
    if fused_head:
        raise ConfigError(f"optim.fused_head cannot be used with this model: {why}")
    return False


def target_token_logprobs(lm: torch.nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                          fuse: bool | None) -> torch.Tensor:
    """Log-probs `[M]` of the target tokens (`labels[:, 1:] != -100`, row-major) predicted from the tokens before
    them; `fuse` None picks the fused head when the logits would exceed `FUSE_ABOVE_BYTES`."""
    vocab = lm.config.get_text_config().vocab_size
    fuse = fuse if fuse is not None else labels.numel() * vocab * 4 > FUSE_ABOVE_BYTES
    targets = labels[:, 1:]
    mask = targets != -100
    if not fuse:
        logits = lm(**inputs, use_cache=False).logits[:, :-1]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float32 at least (bf16 models)
        per_token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100,
                                                      reduction="none")  # no [M, V] copy of the logits
        return -per_token[mask.flatten()]
    hidden = lm.get_decoder()(**inputs, use_cache=False).last_hidden_state[:, :-1]
    logprobs, _ = head_token_logprobs(find_output_head(lm), hidden[mask], targets[mask])
    return logprobs


class SFTLoss(torch.nn.Module):
    def __init__(self, lm: torch.nn.Module, *, fused_head: bool | None = None, partitioned: bool = False):
        super().__init__()
        self.lm = lm
        self.fuse = choose_fused_head(lm, fused_head, partitioned=partitioned)

    def forward(self, tensors: dict[str, torch.Tensor], num_tokens: float) -> torch.Tensor:
        labels = tensors["labels"]
        inputs = {k: v for k, v in tensors.items() if k != "labels"}
        return -target_token_logprobs(self.lm, inputs, labels, self.fuse).sum() / num_tokens


def as_sft_loss(model) -> torch.nn.Module:
    """`model` when it is (or wraps) an `SFTLoss`; else the reference loss over `model`."""
    inner = model
    while hasattr(inner, "module") and isinstance(inner.module, torch.nn.Module):
        inner = inner.module
    return model if isinstance(inner, SFTLoss) else SFTLoss(model, fused_head=False)
