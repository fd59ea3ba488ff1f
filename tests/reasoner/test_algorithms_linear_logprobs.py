"""Log-probs and entropy from hidden states (`linear_token_logprobs`) against the materialised logits path:
`log_softmax(h @ W^T / T).gather`, values and gradients w.r.t. hidden, weight and bias."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms import linear_token_logprobs

F64 = {"atol": 1e-6, "rtol": 0.0}   # the project's float64 requirement
F32 = {"atol": 1e-5, "rtol": 1e-5}


def materialised(hidden, weight, ids, bias=None, temperature=1.0, logit_scale=1.0, softcap=None):
    """The reference: full logits in the compute dtype, then log_softmax / entropy."""
    dtype = torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)
    logits = hidden.to(dtype) @ weight.to(dtype).t()
    if bias is not None:
        logits = logits + bias.to(dtype)
    logits = logits * logit_scale
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1), -(logp.exp() * logp).sum(-1)


def grads(outputs, weights, params):
    loss = sum((o * w).sum() for o, w in zip(outputs, weights))
    return torch.autograd.grad(loss, params, allow_unused=True)


def make(n, t, h, v, *, dtype=torch.float64, bias=False, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    hidden = (scale * torch.randn(n, t, h, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_(True)
    weight = torch.randn(v, h, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
    b = torch.randn(v, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True) if bias else None
    ids = torch.randint(0, v, (n, t), generator=gen)
    return hidden, weight, b, ids, gen


# (N, T, H, V, block_rows, block_vocab): one block; uneven blocks both ways; single rows / single vocab entries
SHAPES = [(2, 3, 8, 11, 1024, 4096), (3, 7, 16, 50, 4, 16), (2, 5, 4, 13, 1, 1), (1, 9, 8, 97, 9, 96)]


@pytest.mark.parametrize("n,t,h,v,br,bv", SHAPES)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("bias", [False, True])
def test_values_and_gradients_match_materialised_float64(n, t, h, v, br, bv, temperature, bias):
    hidden, weight, b, ids, gen = make(n, t, h, v, bias=bias, scale=2.0)
    w_lp, w_ent = torch.randn(n, t, generator=gen, dtype=torch.float64), torch.randn(n, t, generator=gen,
                                                                                     dtype=torch.float64)
    params = [hidden, weight] + ([b] if b is not None else [])
    lp, ent = linear_token_logprobs(hidden, weight, ids, bias=b, temperature=temperature, entropy_grad=True,
                                    block_rows=br, block_vocab=bv)
    ours = grads([lp, ent], [w_lp, w_ent], params)
    ref_lp, ref_ent = materialised(hidden, weight, ids, b, temperature)
    ref = grads([ref_lp, ref_ent], [w_lp, w_ent], params)
    assert lp.dtype == torch.float64 and lp.shape == (n, t) and ent.shape == (n, t)
    assert_close(lp, ref_lp, **F64)
    assert_close(ent, ref_ent, **F64)
    for a, r in zip(ours, ref):
        assert_close(a, r, **F64)


def test_flat_rows_equal_batched_rows():
    hidden, weight, _, ids, _ = make(3, 4, 8, 29)
    lp, ent = linear_token_logprobs(hidden, weight, ids, with_entropy=True, block_rows=5, block_vocab=7)
    flat_lp, flat_ent = linear_token_logprobs(hidden.reshape(12, 8), weight, ids.reshape(12), with_entropy=True)
    assert flat_lp.shape == (12,)
    assert_close(flat_lp, lp.reshape(12), **F64)
    assert_close(flat_ent, ent.reshape(12), **F64)


@pytest.mark.parametrize("softcap,scale", [(None, 0.25), (3.0, 1.0), (2.0, 1.7)])
def test_logit_scale_and_softcap(softcap, scale):
    hidden, weight, b, ids, gen = make(2, 6, 8, 37, bias=True, scale=3.0)
    w = torch.randn(2, 6, generator=gen, dtype=torch.float64)
    params = [hidden, weight, b]
    lp, ent = linear_token_logprobs(hidden, weight, ids, bias=b, temperature=0.8, logit_scale=scale,
                                    softcap=softcap, entropy_grad=True, block_rows=5, block_vocab=8)
    ref_lp, ref_ent = materialised(hidden, weight, ids, b, 0.8, scale, softcap)
    assert_close(lp, ref_lp, **F64)
    assert_close(ent, ref_ent, **F64)
    for a, r in zip(grads([lp, ent], [w, w], params), grads([ref_lp, ref_ent], [w, w], params)):
        assert_close(a, r, **F64)


def test_tied_head_gradients_accumulate_with_the_embedding():
    """A tied head: the weight is the embedding used to make the hidden states; both uses add to its gradient."""
    gen = torch.Generator().manual_seed(3)
    v, h = 31, 8
    emb = torch.randn(v, h, generator=gen, dtype=torch.float64).requires_grad_(True)
    mix = torch.randn(h, h, generator=gen, dtype=torch.float64).requires_grad_(True)
    inputs = torch.randint(0, v, (2, 9), generator=gen)
    ids = torch.roll(inputs, -1, dims=1)

    def run(fused):
        hidden = torch.tanh(emb[inputs] @ mix)  # [2, 9, H]
        if fused:
            lp, _ = linear_token_logprobs(hidden, emb, ids, block_rows=4, block_vocab=6)
        else:
            lp, _ = materialised(hidden, emb, ids)
        return torch.autograd.grad(lp.sum(), [emb, mix])

    for a, r in zip(run(True), run(False)):
        assert_close(a, r, **F64)
    # the embedding's gradient has both parts: the head's alone differs from the total
    hidden = torch.tanh(emb[inputs] @ mix).detach()
    head_only = torch.autograd.grad(materialised(hidden, emb, ids)[0].sum(), emb)[0]
    assert (head_only - run(True)[0]).abs().max() > 1e-3


def test_untied_head_gets_no_embedding_gradient():
    hidden, weight, _, ids, _ = make(2, 4, 8, 19)
    lp, _ = linear_token_logprobs(hidden, weight, ids)
    g_h, g_w = torch.autograd.grad(lp.sum(), [hidden, weight])
    r_h, r_w = torch.autograd.grad(materialised(hidden, weight, ids)[0].sum(), [hidden, weight])
    assert_close(g_h, r_h, **F64)
    assert_close(g_w, r_w, **F64)


def test_ragged_mask_loss_matches():
    """A masked token-mean loss over ragged rows (the trainer's use): masked positions carry no gradient."""
    hidden, weight, _, ids, gen = make(4, 7, 8, 23)
    lengths = torch.tensor([7, 1, 4, 0])
    mask = (torch.arange(7) < lengths[:, None]).double()  # [N, T]
    adv = torch.randn(4, 1, generator=gen, dtype=torch.float64)

    def loss(lp, ent):
        return (-(adv * lp) * mask).sum() / mask.sum() - 0.01 * (ent * mask).sum() / mask.sum()

    lp, ent = linear_token_logprobs(hidden, weight, ids, entropy_grad=True, block_rows=3, block_vocab=5)
    ours = torch.autograd.grad(loss(lp, ent), [hidden, weight])
    ref = torch.autograd.grad(loss(*materialised(hidden, weight, ids)), [hidden, weight])
    for a, r in zip(ours, ref):
        assert_close(a, r, **F64)
    assert ours[0][3].abs().max() == 0 and ours[0][1, 1:].abs().max() == 0


@pytest.mark.parametrize("bv", [1, 5, 7, 23])
def test_tokens_at_vocabulary_edges(bv):
    """Ids 0 and V-1 (the last one in a partial last vocabulary block for bv = 5, 7)."""
    hidden, weight, _, _, _ = make(1, 6, 4, 23)
    ids = torch.tensor([[0, 22, 22, 0, 4, 5]])
    lp, _ = linear_token_logprobs(hidden, weight, ids, block_rows=2, block_vocab=bv)
    ours = torch.autograd.grad(lp.sum(), [hidden, weight])
    ref_lp, _ = materialised(hidden, weight, ids)
    assert_close(lp, ref_lp, **F64)
    for a, r in zip(ours, torch.autograd.grad(ref_lp.sum(), [hidden, weight])):
        assert_close(a, r, **F64)


def test_entropy_without_gradient_is_detached_and_logprob_gradients_unchanged():
    hidden, weight, _, ids, _ = make(2, 5, 8, 17)
    lp, ent = linear_token_logprobs(hidden, weight, ids, with_entropy=True, entropy_grad=False)
    assert lp.requires_grad and not ent.requires_grad
    lp_only, none = linear_token_logprobs(hidden, weight, ids)
    assert none is None
    assert_close(ent, materialised(hidden, weight, ids)[1], **F64)
    for a, r in zip(torch.autograd.grad(lp.sum(), [hidden, weight]),
                    torch.autograd.grad(lp_only.sum(), [hidden, weight])):
        assert_close(a, r, **F64)


def test_entropy_alone_backward():
    hidden, weight, _, ids, _ = make(2, 5, 8, 17, scale=2.0)
    _, ent = linear_token_logprobs(hidden, weight, ids, entropy_grad=True, block_rows=3, block_vocab=4)
    ours = torch.autograd.grad(ent.sum(), [hidden, weight])
    ref = torch.autograd.grad(materialised(hidden, weight, ids)[1].sum(), [hidden, weight])
    for a, r in zip(ours, ref):
        assert_close(a, r, **F64)


def test_only_weight_requires_grad():
    hidden, weight, _, ids, _ = make(2, 3, 4, 9)
    hidden = hidden.detach()
    lp, _ = linear_token_logprobs(hidden, weight, ids, block_vocab=4)
    (g,) = torch.autograd.grad(lp.sum(), [weight])
    assert_close(g, torch.autograd.grad(materialised(hidden, weight, ids)[0].sum(), [weight])[0], **F64)


def test_gradcheck():
    hidden, weight, b, ids, _ = make(1, 3, 3, 7, bias=True)

    def f(hh, ww, bb):
        lp, ent = linear_token_logprobs(hh, ww, ids, bias=bb, temperature=0.9, softcap=2.5, entropy_grad=True,
                                        block_rows=2, block_vocab=3)
        return torch.cat([lp.flatten(), ent.flatten()])

    assert torch.autograd.gradcheck(f, (hidden.detach().requires_grad_(), weight.detach().requires_grad_(),
                                        b.detach().requires_grad_()))


def test_float32_matches_float64_reference():
    hidden, weight, b, ids, gen = make(3, 8, 16, 61, bias=True, scale=2.0)
    w = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    h32, w32, b32 = (x.detach().float().requires_grad_(True) for x in (hidden, weight, b))
    lp, ent = linear_token_logprobs(h32, w32, ids, bias=b32, temperature=0.7, entropy_grad=True, block_rows=5,
                                    block_vocab=16)
    assert lp.dtype == torch.float32
    ref_lp, ref_ent = materialised(hidden, weight, ids, b, 0.7)
    assert_close(lp.double(), ref_lp, **F32)
    assert_close(ent.double(), ref_ent, **F32)
    ours = grads([lp, ent], [w.float(), w.float()], [h32, w32, b32])
    for a, r in zip(ours, grads([ref_lp, ref_ent], [w, w], [hidden, weight, b])):
        assert_close(a.double(), r, **F32)


def test_bf16_parameters_accumulate_in_float32():
    """bf16 hidden and weight: equal to the float32 computation on the same (bf16-valued) numbers — the upcast
    happens before the matmul and the softmax — and close to the float64 truth; gradients come back in bf16."""
    hidden, weight, _, ids, gen = make(2, 16, 32, 301, dtype=torch.bfloat16, scale=2.0)
    lp, ent = linear_token_logprobs(hidden, weight, ids, with_entropy=True, block_rows=8, block_vocab=64)
    g_h, g_w = torch.autograd.grad(lp.sum(), [hidden, weight])
    assert lp.dtype == torch.float32 and g_h.dtype == torch.bfloat16 and g_w.dtype == torch.bfloat16
    h32, w32 = hidden.detach().float().requires_grad_(True), weight.detach().float().requires_grad_(True)
    ref_lp, ref_ent = materialised(h32, w32, ids)
    assert_close(lp, ref_lp, **F32)
    assert_close(ent, ref_ent, **F32)
    r_h, r_w = torch.autograd.grad(ref_lp.sum(), [h32, w32])
    assert_close(g_h.float(), r_h, atol=2e-2, rtol=1e-2)  # one bf16 rounding of the result
    assert_close(g_w.float(), r_w, atol=2e-2, rtol=1e-2)
    # the naive bf16 path (logits rounded to bf16 before the softmax) is far less accurate
    naive = torch.log_softmax((hidden @ weight.t()).float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    assert (naive - ref_lp).abs().max() > 10 * (lp - ref_lp).abs().max()


def test_no_grad_scoring():
    hidden, weight, _, ids, _ = make(2, 3, 4, 9)
    with torch.no_grad():
        lp, ent = linear_token_logprobs(hidden, weight, ids, with_entropy=True)
    assert not lp.requires_grad and not ent.requires_grad
    assert_close(lp, materialised(hidden, weight, ids)[0], **F64)


@pytest.mark.parametrize("bad", ["id_high", "id_low", "shape", "width", "temperature", "bias"])
def test_invalid_inputs_raise(bad):
    hidden, weight, b, ids, _ = make(2, 3, 4, 9, bias=True)
    kwargs = {}
    if bad == "id_high":
        ids = ids.clone()
        ids[0, 0] = 9
    elif bad == "id_low":
        ids = ids.clone()
        ids[0, 0] = -1
    elif bad == "shape":
        ids = ids[:, :2]
    elif bad == "width":
        weight = weight[:, :3]
    elif bad == "temperature":
        kwargs["temperature"] = 0.0
    elif bad == "bias":
        kwargs["bias"] = b[:5]
    with pytest.raises(ValueError):
        linear_token_logprobs(hidden, weight, ids, **kwargs)
