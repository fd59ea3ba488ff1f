"""A lean decode loop for Llama-family decoders (Llama, Mistral, Qwen2, Qwen3), used by the HF engine.

Why: on CPU, `generate` on a small model is bound by per-step overhead, not arithmetic. Each token costs the
module calls, mask construction and cache bookkeeping of the full `forward`, and `DynamicCache` copies the whole
cache every step (`torch.cat`). Here the prefill still runs through the model's own `forward`; after it,
each step is the same computation written directly on the model's weights: fused q/k/v and gate/up
projections (concatenated once per call, so they always reflect the current weights; not for models where those
copies would pass `FUSE_LIMIT_BYTES`), keys and values written
into a preallocated cache, one `scaled_dot_product_attention` per layer with the query heads of a key/value
head laid out as its query rows (grouped-query attention without repeating the cache). The rotary tables come
from the model's own `rotary_emb`, so every RoPE variant it implements is honoured.

Sampling matches `generate` with the engine's settings: temperature, then top-k, then top-p (the order and the
tie handling of transformers' warpers), one `torch.multinomial` per step from the global generator, finished
rows fed the pad token. The recorded log-probability is log softmax(logits / T) at the sampled token, before
any truncation (the engine's contract). Finished rows are dropped from the batch as they accumulate, which
changes the random stream but not the distribution. Equality with `forward`, and with `generate` under one seed
when rows are not dropped (`compact_below=0`), is tested (`tests/reasoner/test_fast_decode.py`).

Anything else — another architecture, LoRA or quantised layers, a sliding window, ZeRO-3-partitioned weights —
is reported by `unsupported_reason` and the engine falls back to `generate`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def unsupported_reason(model) -> str | None:
    """None when `model` can use the lean loop, else why not (the engine then uses `generate`)."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED_TYPES:
        return f"model type {kind!r} is not one of {', '.join(SUPPORTED_TYPES)}"
    if getattr(cfg, "hidden_act", None) != "silu":
        return f"activation {getattr(cfg, 'hidden_act', None)!r} (only silu)"
    if kind == "mistral" and getattr(cfg, "sliding_window", None) is not None:   # Mistral: from the config
        return "sliding-window attention"
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not isinstance(getattr(model, "lm_head", None), nn.Linear) or \
            not isinstance(getattr(inner, "embed_tokens", None), nn.Embedding):
        return "unexpected module layout"
    for layer in layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        if any(type(m) is not nn.Linear for m in linears):
            return "a projection is not a plain nn.Linear (LoRA, quantised or otherwise wrapped)"
        if getattr(attn, "sliding_window", None) is not None:          # Qwen2/Qwen3: per layer type
            return "sliding-window attention"
        if (getattr(attn, "q_norm", None) is None) != (kind != "qwen3"):
            return "unexpected q/k normalisation"
    for p in model.parameters():
        if p.numel() == 0 or hasattr(p, "ds_id"):
            return "parameters are partitioned (DeepSpeed ZeRO-3) or not materialised"
    return None


FUSE_LIMIT_BYTES = 256 << 20    # fuse q/k/v and gate/up only while the concatenated copies stay below this


class _Proj:
    """Linear maps applied to the same input: one matmul over their concatenated weights when `fuse` (a copy made
    per call, so it always reflects the current weights), else one matmul each."""

    def __init__(self, mods: list[nn.Linear], fuse: bool) -> None:
        self.sizes = [m.out_features for m in mods]
        self.parts = [(m.weight, m.bias) for m in mods]
        self.fused = None
        if fuse:
            bias = None
            if any(m.bias is not None for m in mods):
                bias = torch.cat([m.bias if m.bias is not None else m.weight.new_zeros(m.out_features) for m in mods])
            self.fused = (torch.cat([m.weight for m in mods]), bias)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.fused is not None:
            return list(F.linear(x, *self.fused).split(self.sizes, dim=-1))
        return [F.linear(x, w, b) for w, b in self.parts]


@dataclass
class _Layer:
    ln_in: torch.Tensor
    ln_post: torch.Tensor
    qkv: _Proj
    o: nn.Linear
    gate_up: _Proj
    down: nn.Linear
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None


def _layers(model, fuse_limit: int) -> list[_Layer]:
    blocks = model.model.layers
    fused_bytes = sum(m.weight.numel() * m.weight.element_size() for b in blocks
                      for m in (b.self_attn.q_proj, b.self_attn.k_proj, b.self_attn.v_proj, b.mlp.gate_proj,
                                b.mlp.up_proj))
    fuse = fused_bytes <= fuse_limit
    out = []
    for layer in blocks:
        a, m = layer.self_attn, layer.mlp
        out.append(_Layer(
            ln_in=layer.input_layernorm.weight, ln_post=layer.post_attention_layernorm.weight,
            qkv=_Proj([a.q_proj, a.k_proj, a.v_proj], fuse), o=a.o_proj,
            gate_up=_Proj([m.gate_proj, m.up_proj], fuse), down=m.down_proj,
            q_norm=a.q_norm.weight if getattr(a, "q_norm", None) is not None else None,
            k_norm=a.k_norm.weight if getattr(a, "k_norm", None) is not None else None))
    return out


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' RMSNorm: normalise in float32, cast back, then scale."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, with rotate_half(x) * sin == roll(x, d/2) * [-sin₁, sin₂]."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed


def warp(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Scores to sample from, as transformers' warpers compute them (temperature, then top-k, then top-p)."""
    scores = logits / temperature
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k).values[..., -1, None]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        drop = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        drop[..., -1:] = False
        scores = scores.masked_fill(drop.scatter(1, order, drop), -float("inf"))
    return scores


class Decoder:
    """Samples continuations of a batch whose prompts (all but their last token) are already in a cache."""

    def __init__(self, model, fuse_limit: int = FUSE_LIMIT_BYTES) -> None:
        cfg = model.config
        self.model = model
        self.layers = _layers(model, fuse_limit)
        self.eps = cfg.rms_norm_eps
        attn = model.model.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.scaling = attn.scaling
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.embed = model.model.embed_tokens.weight
        self.final_norm = model.model.norm.weight
        self.lm_head, self.lm_bias = model.lm_head.weight, model.lm_head.bias

    @torch.inference_mode()
    def sample(self, prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None, repeat: int,
               last_tokens: torch.Tensor, attention: torch.Tensor, *, max_new_tokens: int, stop_ids: list[int],
               pad_id: int, temperature: float, top_k: int, top_p: float,
               compact_below: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        """`prefix_kv`: per layer, keys/values `[B, kv_heads, P - 1, d]` of each distinct prompt but its last token
        (left-padded; None when P = 1), each used for `repeat` consecutive rows; `last_tokens` `[N]` and
        `attention` `[N, P]` (0 at padding) for the N = B × repeat rows. Returns `(tokens [N, L], logprobs
        [N, L])`, L <= max_new_tokens; after a row's stop token come pad tokens (log-prob 0).

        Finished rows are dropped from the batch (their cache rows copied out) once the unfinished ones are at
        most `compact_below` of the rows being computed; 0 never drops them, which keeps the random stream
        identical to `generate`'s (it samples every row until all are done)."""
        n, p = attention.shape
        d, kv, g = self.head_dim, self.n_kv, self.n_heads // self.n_kv
        total = p + max_new_tokens
        cache = []
        for layer in range(len(self.layers)):
            ck = self.embed.new_empty(n, kv, total, d)
            cv = self.embed.new_empty(n, kv, total, d)
            if prefix_kv is not None:
                k, v = prefix_kv[layer]
                b = k.shape[0]
                ck.view(b, repeat, kv, total, d)[:, :, :, :p - 1] = k[:, None]
                cv.view(b, repeat, kv, total, d)[:, :, :, :p - 1] = v[:, None]
            cache.append((ck, cv))
        device = attention.device
        valid = torch.ones(n, 1, 1, total, dtype=torch.bool, device=device)
        valid[:, 0, 0, :p] = attention.bool()
        positions = attention.sum(dim=1) - 1                        # the last prompt token's position
        stops = torch.tensor(stop_ids, device=device, dtype=torch.long)
        greedy = temperature == 0
        t_record = temperature if temperature > 0 else 1.0
        out_tokens = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
        out_logprobs = torch.zeros(n, max_new_tokens, device=device)
        rows = torch.arange(n, device=device)                        # which output rows are being computed
        unfinished = torch.ones(n, dtype=torch.bool, device=device)
        current = last_tokens
        rotary = self.model.model.rotary_emb
        half = d // 2
        steps = 0
        for step in range(max_new_tokens):
            m = len(rows)
            col = p - 1 + step                                     # the cache column written this step
            h = F.embedding(current, self.embed)                   # [m, H]
            cos, sin = rotary(h, positions[:, None])               # [m, 1, d]
            sin_signed = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
            mask = valid[..., :col + 1]
            for layer, (ck, cv) in zip(self.layers, cache):
                q, k, v = layer.qkv(_rms(h, layer.ln_in, self.eps))
                q, k, v = q.view(m, self.n_heads, d), k.view(m, kv, d), v.view(m, kv, d)
                if layer.q_norm is not None:
                    q, k = _rms(q, layer.q_norm, self.eps), _rms(k, layer.k_norm, self.eps)
                q, k = _rotate(q, cos, sin_signed), _rotate(k, cos, sin_signed)
                ck[:, :, col] = k
                cv[:, :, col] = v
                out = F.scaled_dot_product_attention(q.view(m, kv, g, d), ck[:, :, :col + 1], cv[:, :, :col + 1],
                                                     attn_mask=mask, scale=self.scaling)
                h = h + F.linear(out.reshape(m, self.n_heads * d), layer.o.weight, layer.o.bias)
                gate, up = layer.gate_up(_rms(h, layer.ln_post, self.eps))
                h = h + F.linear(F.silu(gate) * up, layer.down.weight, layer.down.bias)
            logits = F.linear(_rms(h, self.final_norm, self.eps), self.lm_head, self.lm_bias).float()
            if greedy:
                nxt = logits.argmax(dim=-1)
            else:
                probs = warp(logits, temperature, top_k, top_p).softmax(dim=-1)
                nxt = torch.multinomial(probs, num_samples=1).squeeze(1)
            nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad_id))
            lp = torch.log_softmax(logits / t_record, dim=-1).gather(1, nxt[:, None]).squeeze(1)
            out_tokens[rows, step] = nxt
            out_logprobs[rows, step] = torch.where(unfinished, lp, torch.zeros_like(lp))
            steps = step + 1
            unfinished &= ~torch.isin(nxt, stops)
            alive = int(unfinished.sum())
            if alive == 0:
                break
            current = nxt
            positions = positions + 1
            if alive <= compact_below * m:
                keep = unfinished.nonzero().squeeze(1)
                rows, current, positions, unfinished = rows[keep], current[keep], positions[keep], unfinished[keep]
                valid = valid[keep]
                cache = [(ck[keep], cv[keep]) for ck, cv in cache]
        return out_tokens[:, :steps], out_logprobs[:, :steps]


def prefix_kv(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of a transformers `DynamicCache`."""
    return [(layer.keys, layer.values) for layer in cache.layers]
