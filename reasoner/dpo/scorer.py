"""DPO's forward as a module: summed answer log-probs per sequence, on SFT's two exact paths.

`SequenceLogps(lm)(tensors, num_sequences) -> [S]`: the log-probs of the target tokens (the model's logits, or the
fused head on the body's hidden states: `reasoner.sft.loss.target_token_logprobs`) summed per sequence with the
`sequence` tensor of `reasoner.dpo.data.collate_pairs`, so padded and packed micro-batches give the same sums.
Being a module, the backends wrap it (DDP's gradient hooks see the whole forward); a frozen reference uses the same
class, unwrapped, under `torch.no_grad`.
"""
from __future__ import annotations

import torch

from reasoner.sft.loss import choose_fused_head, target_token_logprobs


class SequenceLogps(torch.nn.Module):
    def __init__(self, lm: torch.nn.Module, *, fused_head: bool | None = None, partitioned: bool = False):
        super().__init__()
        self.lm = lm
        self.fuse = choose_fused_head(lm, fused_head, partitioned=partitioned)

    def forward(self, tensors: dict[str, torch.Tensor], num_sequences: int) -> torch.Tensor:
        labels, sequence = tensors["labels"], tensors["sequence"]
        inputs = {k: v for k, v in tensors.items() if k not in ("labels", "sequence")}
        logprobs = target_token_logprobs(self.lm, inputs, labels, self.fuse)          # [M], row-major targets
        owner = sequence[:, 1:][labels[:, 1:] != -100]                                  # [M]
        out = torch.zeros(num_sequences, dtype=logprobs.dtype, device=logprobs.device)
        return out.index_add(0, owner, logprobs)
