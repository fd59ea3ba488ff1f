"""Engines by name: `make_engine(engine_section, model, tokenizer)`.

The only place that knows the concrete engine classes; it imports each lazily, so vLLM is needed only when it
is asked for (an `engine.name: vllm` without vLLM installed is one clear error).
"""
from __future__ import annotations

from reasoner.rollout.base import RolloutEngine
from reasoner.rollout.config import EngineConfig


def make_engine(cfg: EngineConfig, model, tokenizer) -> RolloutEngine:
    """The engine `cfg` names, sampling with `model`'s current weights: the built-in HF engine, a colocated vLLM
    engine, or a client of `reasoner serve` processes (`engine.vllm.mode: server`)."""
    if cfg.name == "hf":
        from reasoner.rollout.hf_engine import HFEngine
        return HFEngine(model, tokenizer, max_batch_size=cfg.max_batch_size, fast_decode=cfg.fast_decode,
                        compact_below=cfg.compact_below)
    if cfg.vllm.mode == "server":
        from reasoner.rollout.server_client import RemoteEngine
        return RemoteEngine.from_model(model, tokenizer, cfg.vllm)
    from reasoner.rollout.vllm_engine import VLLMEngine
    return VLLMEngine.from_model(model, tokenizer, cfg.vllm)
