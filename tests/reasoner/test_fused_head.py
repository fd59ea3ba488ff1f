"""Body + fused output head of real (tiny) Hugging Face models against the models' own logits and against the
trainer's current materialised-logits path (`forward_logprobs`, shared-prompt KV cache included)."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from reasoner.models.exact import upcast_norms
from reasoner.training.batch import TrainBatch
from reasoner.training.fused_head import (
    OutputHead,
    body_hidden_states,
    find_output_head,
    head_token_logprobs,
    verify_output_head,
)
from reasoner.training.logprobs import forward_logprobs
from tests.reasoner._batch_helpers import ragged_batch

F64 = {"atol": 1e-6, "rtol": 0.0}


def fused_padded_logprobs(model, batch: TrainBatch, temperature: float, entropy_grad: bool):
    """Body on the padded batch, fused head on the response positions."""
    t = batch.response_width
    hidden = body_hidden_states(model, batch.input_ids, batch.attention_mask, batch.position_ids)
    hidden = hidden[:, -t - 1:-1]  # position p predicts token p + 1
    return head_token_logprobs(find_output_head(model), hidden, batch.response_ids, temperature=temperature,
                               with_entropy=True, entropy_grad=entropy_grad, block_rows=16, block_vocab=100)


@pytest.fixture(scope="module")
def model64(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64, attn_implementation="sdpa")
    assert upcast_norms(model) > 0
    return model


def test_tied_head_is_the_embedding(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    head = find_output_head(model)
    assert head.weight is model.get_input_embeddings().weight
    assert head.bias is None and head.logit_scale == 1.0 and head.softcap is None
    assert verify_output_head(model, head) < 1e-4


def test_float32_fused_equals_model_logits(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    batch = ragged_batch(model.config.vocab_size, 1, [5, 2, 7], [6, 1, 3])
    with torch.no_grad():
        lp, ent = fused_padded_logprobs(model, batch, 0.8, False)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       position_ids=batch.position_ids).logits[:, -batch.response_width - 1:-1]
    ref = torch.log_softmax(logits.double() / 0.8, -1)
    mask = batch.response_mask.bool()
    assert_close(lp[mask].double(), ref.gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1)[mask],
                 atol=1e-5, rtol=1e-5)
    assert_close(ent[mask].double(), -(ref.exp() * ref).sum(-1)[mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("entropy_grad", [False, True])
def test_float64_values_and_gradients_equal_current_trainer_path(model64, entropy_grad):
    """Against `forward_logprobs` (materialised logits; the shared-prompt KV-cache path for group_size 3)."""
    batch = ragged_batch(model64.config.vocab_size, 3, [4, 9], [7, 1, 5, 12, 3, 8])
    mask = batch.response_mask
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * mask
    params = [p for p in model64.parameters() if p.requires_grad]

    def run(fn):
        lp, ent = fn()
        loss = (lp * weights).sum() + (0.1 * (ent * weights).sum() if entropy_grad else 0.0)
        return lp * mask, ent * mask, torch.autograd.grad(loss, params)

    ref_lp, ref_ent, ref_g = run(lambda: forward_logprobs(model64, batch, 0.7, entropy_grad=entropy_grad))
    lp, ent, g = run(lambda: fused_padded_logprobs(model64, batch, 0.7, entropy_grad))
    assert lp.dtype == torch.float64
    assert_close(lp, ref_lp, **F64)
    assert_close(ent, ref_ent, **F64)
    for a, r in zip(g, ref_g):
        assert_close(a, r, **F64)


def _tiny(config_cls, **kw):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    config = config_cls(vocab_size=101, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=1, head_dim=8, eos_token_id=1, pad_token_id=0,
                        bos_token_id=2, **kw)
    return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("family,kw,field,value", [
    ("Gemma2Config", {"final_logit_softcapping": 5.0}, "softcap", 5.0),
    ("CohereConfig", {"logit_scale": 0.3}, "logit_scale", 0.3),
    ("GraniteConfig", {"logits_scaling": 4.0}, "logit_scale", 0.25),
])
def test_logit_transforms_of_other_families(family, kw, field, value):
    import transformers
    model = _tiny(getattr(transformers, family), **kw)
    with torch.no_grad():  # larger weights, so that the transform matters
        model.get_output_embeddings().weight.mul_(20.0)
    head = find_output_head(model)
    assert getattr(head, field) == pytest.approx(value)
    assert verify_output_head(model, head) < 1e-4
    plain = OutputHead(weight=head.weight, bias=head.bias)  # the transform forgotten: detected
    with pytest.raises(NotImplementedError, match="differ"):
        verify_output_head(model, plain)


@pytest.mark.parametrize("family", ["LlamaConfig", "MistralConfig", "Qwen2Config", "Qwen3Config"])
def test_families_without_logit_transforms(family):
    import transformers
    model = _tiny(getattr(transformers, family), tie_word_embeddings=False)
    head = find_output_head(model)
    assert head.weight is model.lm_head.weight and head.weight is not model.get_input_embeddings().weight
    assert (head.logit_scale, head.softcap) == (1.0, None)
    assert verify_output_head(model, head) < 1e-4
    with pytest.raises(NotImplementedError, match="differ"):  # a wrong head is caught
        verify_output_head(model, OutputHead(weight=model.get_input_embeddings().weight, bias=None))
