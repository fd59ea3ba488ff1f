"""vLLM engine options: the typed `engine.vllm` section, importable without vLLM installed.

The trainer, `reasoner eval`, `reasoner distill` and `reasoner serve` all read these; only the engine modules
(`vllm_engine.py`, `server_client.py`) import vLLM itself, and only when an engine is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasoner.config import ConfigError

LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")
MODES = ("colocate", "server")
TRANSPORTS = ("auto", "tensors", "ipc", "bytes", "nccl")


@dataclass
class VLLMOptions:
    mode: str = "colocate"                 # colocate: an LLM in this process | server: a `reasoner serve` process
    server_url: str | None = None          # server mode: http://host:port (several: comma-separated)
    server_token_file: str | None = None   # server mode: the servers' shared secret; else $REASONER_SERVE_TOKEN
    server_ca_file: str | None = None      # server mode over https with a private CA: its PEM bundle
    weight_transport: str = "auto"         # auto | tensors | ipc | bytes | nccl (server mode on GPUs)
    gpu_memory_utilization: float = 0.3    # colocate on GPU: vLLM's share of the GPU; the rest is training's
    sleep_level: int = 0                   # 0 off; 1 offload weights and drop KV cache between rollouts; 2 drop both
    cpu_kv_cache_gb: float = 1.0           # CPU backend: KV cache size (VLLM_CPU_KVCACHE_SPACE)
    in_process: bool = False               # run vLLM's engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
    dtype: str = "auto"                    # auto -> the trainer model's dtype
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    enforce_eager: bool = True             # no CUDA-graph capture: faster start, weights may change every step
    tensor_parallel_size: int = 1
    logprobs_mode: str = "processed_logprobs"
    seed: int = 0                          # sampling seed (the trainer's rank is added)
    timeout_s: float = 600.0               # any engine call taking longer fails (generate, weight load, reset)
    llm_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to vllm.LLM as they are

    def __post_init__(self):
        checks = [(self.mode in MODES, f"mode must be one of {', '.join(MODES)}"),
                  (self.weight_transport in TRANSPORTS, f"weight_transport must be one of {', '.join(TRANSPORTS)}"),
                  (self.sleep_level in (0, 1, 2), "sleep_level must be 0, 1 or 2"),
                  (0 < self.gpu_memory_utilization <= 1, "gpu_memory_utilization must be in (0, 1]"),
                  (self.logprobs_mode in LOGPROBS_MODES, f"logprobs_mode must be one of {', '.join(LOGPROBS_MODES)}"),
                  (self.timeout_s > 0, "timeout_s must be > 0"),
                  (self.mode != "server" or bool(self.server_url), "server mode needs server_url")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"engine.vllm: {message}")

    @property
    def server_urls(self) -> list[str]:
        return [u.strip() for u in (self.server_url or "").split(",") if u.strip()]
