"""A Hugging Face causal LM split into its body and its output head, for log-probs straight from hidden states.

`find_output_head(model)` returns the head's weight (for tied embeddings: the embedding parameter itself), bias,
and the constant transforms some models apply to their logits; `body_hidden_states(model, ...)` runs the model
without its head (`model.get_decoder()`, i.e. `model.model` for Llama/Qwen/Mistral/Gemma), returning
`last_hidden_state`; `head_token_logprobs(head, hidden, ids, ...)` then calls
`reasoner.algorithms.linear_token_logprobs`, so the `[N, T, V]` logits never exist.

Logit transforms recognised (checked against transformers 5.24's modeling files):
- `final_logit_softcapping` (Gemma 2/3/4, VaultGemma, nanochat, ...): `cap * tanh(logits / cap)`;
- `logit_scale` on Cohere-family configs: `logits * logit_scale`;
- `logits_scaling` on Granite-family configs: `logits / logits_scaling`.
Others (MiniCPM's width scaling, muP multipliers, ...) are not recognised: `verify_output_head` compares body + head
against the model's own `model(...).logits` on a few tokens and raises on a mismatch, so a model with an unknown
transform fails loudly at start-up instead of training on wrong log-probs. Call it once per model.

Not supported: a head that is not a dense `nn.Linear`-like module with a `[V, H]` weight (quantised, LoRA on the
head), and ZeRO-3 (its partitioned head weight is only gathered inside the head module's own forward).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reasoner.algorithms.linear_logprobs import linear_token_logprobs


@dataclass(frozen=True)
class OutputHead:
    weight: Tensor                 # [V, H] (tied: the input embedding's parameter)
    bias: Tensor | None            # [V] or None
    logit_scale: float = 1.0       # logits are multiplied by this
    softcap: float | None = None   # then `softcap * tanh(logits / softcap)`

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]


def _unwrap(model):
    """The bare Hugging Face model under DDP / DeepSpeed (`.module`) and PEFT (`get_base_model`) wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def find_output_head(model) -> OutputHead:
    """The output head of a causal LM and the constant transforms its forward applies to the logits."""
    model = _unwrap(model)
    lm_head = model.get_output_embeddings()
    weight = getattr(lm_head, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise NotImplementedError(f"output head {type(lm_head).__name__} has no dense [V, H] weight")
    if weight.numel() == 0:
        raise NotImplementedError("the output head's weight is empty (ZeRO-3 partitioned?): not supported")
    bias = getattr(lm_head, "bias", None)
    config = model.config
    config = getattr(config, "get_text_config", lambda: config)()
    model_type = str(getattr(config, "model_type", ""))
    scale = 1.0
    if model_type.startswith("cohere") and getattr(config, "logit_scale", None) is not None:
        scale = float(config.logit_scale)
    if model_type.startswith("granite") and getattr(config, "logits_scaling", None) is not None:
        scale = 1.0 / float(config.logits_scaling)
    softcap = getattr(config, "final_logit_softcapping", None)
    return OutputHead(weight=weight, bias=bias if isinstance(bias, Tensor) else None, logit_scale=scale,
                      softcap=float(softcap) if softcap is not None else None)


def body_hidden_states(model, input_ids: Tensor, attention_mask: Tensor | None = None,
                       position_ids: Tensor | None = None, **kwargs) -> Tensor:
    """`[B, L, H]` final hidden states (after the last norm): the model's forward without its head.

    Calls the decoder module directly, which bypasses a DDP/DeepSpeed wrapper's forward (its hooks): for a training
    pass under DDP, wrap a module that calls this (and the head) in DDP instead of the bare causal LM.
    """
    decoder = _unwrap(model).get_decoder()
    out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                  **kwargs)
    return out.last_hidden_state


def head_token_logprobs(head: OutputHead, hidden: Tensor, token_ids: Tensor, *, temperature: float = 1.0,
                        with_entropy: bool = False, entropy_grad: bool = False,
                        block_rows: int | None = None, block_vocab: int | None = None) -> tuple[Tensor, Tensor | None]:
    """`linear_token_logprobs` with the head's weight, bias and logit transforms."""
    return linear_token_logprobs(hidden, head.weight, token_ids, bias=head.bias, temperature=temperature,
                                 logit_scale=head.logit_scale, softcap=head.softcap, with_entropy=with_entropy,
                                 entropy_grad=entropy_grad, block_rows=block_rows, block_vocab=block_vocab)


@torch.no_grad()
def verify_output_head(model, head: OutputHead | None = None, input_ids: Tensor | None = None,
                       atol: float | None = None) -> float:
    """Raise unless body + `head` reproduces `model(input_ids).logits` as log-probs; returns the max difference.

    `input_ids` defaults to 8 fixed tokens spread over the vocabulary; `atol` defaults by dtype (float64 1e-9,
    float32 1e-4, half types 5e-2). At each position it compares the fused log-probs of three tokens — the
    model's most and least likely ones and the last vocabulary id — with `log_softmax` of the model's logits."""
    model = _unwrap(model)
    head = head or find_output_head(model)
    p = next(model.parameters())
    if input_ids is None:
        input_ids = (torch.arange(8, device=p.device) * 7919 % head.vocab_size).unsqueeze(0)
    reference = torch.log_softmax(model(input_ids=input_ids, use_cache=False).logits.double(), dim=-1)[0]  # [L, V]
    hidden = body_hidden_states(model, input_ids)[0]  # [L, H]
    length = hidden.shape[0]
    probes = torch.stack([reference.argmax(-1), reference.argmin(-1),
                          torch.full((length,), head.vocab_size - 1, device=p.device)], dim=0)  # [3, L]
    ours, _ = head_token_logprobs(head, hidden.unsqueeze(0).expand(3, -1, -1), probes)
    diff = float((ours.double() - reference.gather(-1, probes.t()).t()).abs().max())
    tol = atol if atol is not None else {torch.float64: 1e-9, torch.float32: 1e-4}.get(p.dtype, 5e-2)
    if not diff <= tol:
        raise NotImplementedError(
            f"body + output head differ from {type(model).__name__}'s logits by {diff:.3g} (> {tol:g}): the model "
            "transforms its logits in a way find_output_head does not know; use the materialised-logits path")
    return diff
