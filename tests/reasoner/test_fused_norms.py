"""`reasoner.models.fused`: the fused RMSNorm gives the same values and gradients as transformers' module."""
from __future__ import annotations

import copy

import pytest
import torch

from reasoner.models.fused import fuse_rms_norms


def _model(kind: str):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=128)
    cfg = Qwen3Config(**common) if kind == "qwen3" else LlamaConfig(**common)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


def _loss_and_grads(model, ids):
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("kind, expected", [("qwen3", 2 * 4 + 1), ("llama", 2 * 2 + 1)])
def test_fused_norms_match_transformers(kind, expected):
    model = _model(kind)
    ids = torch.randint(0, 97, (3, 20))
    ref_loss, ref_grads = _loss_and_grads(model, ids)
    assert fuse_rms_norms(model) == expected
    assert fuse_rms_norms(model) == 0                       # idempotent
    loss, grads = _loss_and_grads(model, ids)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=0)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-6, rtol=1e-5)
    # a deep copy (e.g. a reference model) uses its own weights, not the original's
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.model.norm.weight.mul_(2.0)
    assert not torch.allclose(twin(input_ids=ids).logits, model(input_ids=ids).logits)
    # other dtypes take the module's own forward
    norm = model.model.norm.to(torch.bfloat16)
    x = torch.randn(2, 64, dtype=torch.bfloat16)
    assert torch.equal(norm(x), type(norm).forward(norm, x))
