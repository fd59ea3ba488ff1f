"""Engines by name: `make_engine(engine_section, model, tokenizer)`.

The only place that knows the concrete engine classes; it imports each lazily, so vLLM is needed only when it
is asked for (an `engine.name: vllm` without vLLM installed is one clear error).
"""
from __future__ import annotations

from reasoner.rollout.base import EngineError, RolloutEngine
from reasoner.rollout.config import EngineConfig


def check_engine(cfg: EngineConfig) -> None:
    """Fail before any model loads when the engine asked for cannot run here (vLLM not installed)."""
    if cfg.name == "vllm" and cfg.vllm.mode == "colocate":
        import importlib.util
        if importlib.util.find_spec("vllm") is None:
            raise EngineError("engine.name=vllm, but vLLM is not installed in this environment (pip install vllm on "
                              "a GPU machine; on CPU see docs/scaling.md), or use engine.name=hf")


def make_engine(cfg: EngineConfig, model, tokenizer) -> RolloutEngine:
    """The engine `cfg` names, sampling with `model`'s current weights: the built-in HF engine, a colocated vLLM
    engine, or a client of `reasoner serve` processes (`engine.vllm.mode: server`)."""
    check_engine(cfg)
    if cfg.name == "hf":
        from reasoner.rollout.hf_engine import HFEngine
        return HFEngine(model, tokenizer, max_batch_size=cfg.max_batch_size, fast_decode=cfg.fast_decode,
                        compact_below=cfg.compact_below)
    if cfg.vllm.mode == "server":
        from reasoner.rollout.server_client import RemoteEngine
        return RemoteEngine.from_model(model, tokenizer, cfg.vllm)
    from reasoner.rollout.vllm_engine import VLLMEngine
    return VLLMEngine.from_model(model, tokenizer, cfg.vllm)
