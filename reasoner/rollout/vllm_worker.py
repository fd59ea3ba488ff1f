"""Runs inside vLLM's workers: receives the trainer's weights (a vLLM worker extension class).

vLLM mixes this class into its worker when the engine is built with
`worker_extension_cls="reasoner.rollout.vllm_worker.WeightSyncExtension"`, and the engine calls its methods
through `LLM.collective_rpc` (vLLM's documented route for RL weight updates). It imports nothing of reasoner's
beyond this file, because it is imported in vLLM's worker processes.

Transports (chosen by `VLLMEngine`, see there):
- `tensors`: the worker lives in the trainer's process (GPU colocation with `external_launcher`, or
  `VLLM_ENABLE_V1_MULTIPROCESSING=0`): the trainer's tensors arrive as they are, no copy;
- `ipc`: GPU, worker in its own process: CUDA IPC handles (`torch.multiprocessing.reductions.reduce_tensor`);
  the worker maps the trainer's GPU memory and copies from it, nothing goes through the host;
- `bytes`: CPU, worker in its own process: one safetensors blob (tensors' memoryviews do not pickle);
- `nccl`: server mode on other GPUs/nodes: the trainer broadcasts each tensor over a NCCL group it forms with the
  server's workers (`init_weight_group`), as vLLM's RLHF example does.

Loading uses `model_runner.reload_weights` (vLLM's in-place reload, which re-runs per-layer weight processing)
when it exists, else `model.load_weights`. One thing it misses, measured on vLLM's CPU backend: a tied output
head (`tie_word_embeddings`) is never loaded by name, so its packed GEMM copy keeps the old weights; it is
re-packed here (`repack_tied_head`). The trainer's probe check (reasoner.training.sync_check) catches the
stale head when this step is skipped.
"""
from __future__ import annotations

from typing import Any

import torch


class WeightSyncExtension:
    """Methods vLLM adds to its worker; `self` is the vLLM worker (it has `model_runner`, `device`)."""

    def reasoner_load_weights(self, payload: Any, transport: str, repack_tied_head: bool = True) -> int:
        """Load a full set of weights sent by the trainer; returns how many tensors were loaded."""
        weights = _decode(payload, transport, getattr(self, "device", None))
        self._reasoner_apply(weights, repack_tied_head)
        return len(weights)

    def reasoner_init_weight_group(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        """Join the NCCL group the trainer (rank 0) broadcasts weights over (server mode on GPUs)."""
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.parallel_state import get_world_group
        from vllm.distributed.utils import StatelessProcessGroup

        rank = get_world_group().rank + rank_offset
        group = StatelessProcessGroup.create(host=host, port=port, rank=rank, world_size=world_size)
        self._reasoner_nccl = PyNcclCommunicator(group, device=self.device)

    def reasoner_receive_weights(self, metadata: list[tuple[str, str, list[int]]],
                                 repack_tied_head: bool = True) -> int:
        """Receive the tensors listed in `metadata` (name, dtype, shape), in order, from the trainer's broadcast."""
        weights = []
        for name, dtype_name, shape in metadata:
            tensor = torch.empty(shape, dtype=getattr(torch, dtype_name), device=self.device)
            self._reasoner_nccl.broadcast(tensor, src=0, stream=torch.cuda.current_stream())
            weights.append((name, tensor))
        torch.cuda.synchronize()
        self._reasoner_apply(weights, repack_tied_head)
        return len(weights)

    def reasoner_param_checksum(self) -> float:
        """Sum of every parameter (a cheap fingerprint for debugging a sync; packed layers may read empty)."""
        model = self.model_runner.get_model() if hasattr(self.model_runner, "get_model") else self.model_runner.model
        return float(sum(p.detach().float().sum() for p in model.parameters()))

    def _reasoner_apply(self, weights: list[tuple[str, torch.Tensor]], repack_tied_head: bool) -> None:
        runner = self.model_runner
        if hasattr(runner, "reload_weights"):
            if hasattr(self, "reload_weights"):  # the worker wraps it in the vLLM config context it needs
                self.reload_weights(weights_iterator=iter(weights))
            else:
                runner.reload_weights(weights_iterator=iter(weights))
        else:  # vLLM versions before in-place reload
            runner.model.load_weights(weights=weights)
        if repack_tied_head:
            _repack_tied_head(runner.get_model() if hasattr(runner, "get_model") else runner.model)


def _decode(payload: Any, transport: str, device) -> list[tuple[str, torch.Tensor]]:
    if transport == "tensors":
        return list(payload)
    if transport == "bytes":
        from safetensors.torch import load

        return list(load(payload).items())
    if transport == "ipc":
        weights = []
        for name, (rebuild, args) in payload:
            args = list(args)
            args[6] = device.index if device is not None else torch.cuda.current_device()  # this worker's GPU
            weights.append((name, rebuild(*args)))
        return weights
    raise ValueError(f"unknown weight transport '{transport}' (tensors, bytes, ipc)")


def _repack_tied_head(model: torch.nn.Module) -> None:
    """Re-run the output head's post-load processing when it shares the embedding's weight (CPU backend)."""
    from vllm.platforms import current_platform

    config = getattr(model, "config", None)
    head = getattr(model, "lm_head", None)
    if not current_platform.is_cpu() or head is None or not getattr(config, "tie_word_embeddings", False):
        return
    method = getattr(head, "quant_method", None)
    if method is not None and hasattr(method, "process_weights_after_loading"):
        method.process_weights_after_loading(head)
