"""The trainer's side of server mode: a `RolloutEngine` that calls a `reasoner serve` process over HTTP.

`rollout.engine: vllm` with `rollout.vllm: {mode: server, server_url: http://host:port}`. Every rank generates
its own prompts through the server; only rank 0 pushes weights (the trainer holds a barrier after the sync, so
no rank samples before the new weights are in place). Weight transports:
- `bytes` (default without a GPU): one safetensors body per sync; fine for small models and CPU tests;
- `nccl` (default with a GPU): the trainer joins the server's workers in a NCCL group (vLLM's
  `StatelessProcessGroup` + `PyNcclCommunicator`, as in vLLM's RLHF example) and broadcasts each tensor; the
  HTTP call that makes the server receive runs in a thread while this process broadcasts.
Every HTTP call has a timeout (`timeout_s`): a server that hangs or dies becomes an `EngineError`.
"""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import urlparse

import torch

from reasoner.rollout.base import Completion, RolloutEngine, SamplingParams
from reasoner.rollout.vllm_engine import EngineError, VLLMOptions, _eos_ids


class RemoteEngine(RolloutEngine):
    holds_own_weights = True

    def __init__(self, url: str, opts: VLLMOptions, *, eos_ids: Sequence[int] = ()):
        self.url = url.rstrip("/")
        self.opts = opts
        self.eos_ids = list(eos_ids)
        self.rank = int(os.environ.get("RANK", "0"))
        self.transport = opts.weight_transport if opts.weight_transport != "auto" else \
            ("nccl" if torch.cuda.is_available() else "bytes")
        if self.transport not in ("bytes", "nccl"):
            raise ValueError(f"rollout.vllm.weight_transport={self.transport} is not available in server mode "
                             "(bytes or nccl)")
        self._nccl = None
        self.info = self._wait_until_healthy()
        self.dtype = str(self.info.get("dtype", ""))  # the trainer's probe loosens its thresholds for bf16/fp16

    @classmethod
    def from_model(cls, model, tokenizer, opts: VLLMOptions) -> "RemoteEngine":
        engine = cls(opts.server_url, opts, eos_ids=_eos_ids(model, tokenizer))
        engine.sync_weights(model)  # the server now serves exactly the trainer's weights
        return engine

    # ------------------------------------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Completion]]:
        request = asdict(params)
        request["stop_token_ids"] = list(dict.fromkeys(list(params.stop_token_ids) + self.eos_ids))
        reply = self._post("/generate", {"prompts": [list(p) for p in prompts], "params": request})
        return [[Completion(**c) for c in group] for group in reply["completions"]]

    # ------------------------------------------------------------------------------------------ weights
    def sync_weights(self, model) -> None:
        if self.rank != 0:
            return  # one push per sync; the trainer's barrier makes the other ranks wait for it
        weights = [(name, p.detach()) for name, p in model.named_parameters()]
        self.load_weights(weights)

    def load_weights(self, weights: list[tuple[str, torch.Tensor]], *, repack_tied_head: bool = True) -> int:
        if self.transport == "bytes":
            from safetensors.torch import save
            body = save({name: t.contiguous().cpu() for name, t in weights})
            path = "/weights" + ("" if repack_tied_head else "?repack_tied_head=0")
            return int(self._post(path, body)["loaded"])
        return self._broadcast(weights, repack_tied_head)

    def _broadcast(self, weights: list[tuple[str, torch.Tensor]], repack_tied_head: bool) -> int:
        if self._nccl is None:
            self._nccl = self._join_weight_group()
        metadata = [(name, str(t.dtype).removeprefix("torch."), list(t.shape)) for name, t in weights]
        reply: dict[str, Any] = {}
        receiver = threading.Thread(target=lambda: reply.update(self._post(
            "/weights/nccl", {"metadata": metadata, "repack_tied_head": repack_tied_head})), daemon=True)
        receiver.start()
        for _, tensor in weights:
            self._nccl.broadcast(tensor.contiguous(), src=0, stream=torch.cuda.current_stream())
        torch.cuda.synchronize()
        receiver.join(self.opts.timeout_s)
        if receiver.is_alive() or "loaded" not in reply:
            raise EngineError(f"server {self.url} did not confirm the NCCL weight update within "
                              f"{self.opts.timeout_s:g} s")
        return int(reply["loaded"])

    def _join_weight_group(self):
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        host = os.environ.get("REASONER_WEIGHT_SYNC_HOST") or _local_address(self.url)
        port = int(os.environ.get("REASONER_WEIGHT_SYNC_PORT", "51216"))
        world_size = 1 + int(self.info.get("workers", 1))
        joiner = threading.Thread(target=lambda: self._post(
            "/weights/nccl/init", {"host": host, "port": port, "world_size": world_size}), daemon=True)
        joiner.start()
        group = StatelessProcessGroup.create(host=host, port=port, rank=0, world_size=world_size)
        communicator = PyNcclCommunicator(group, device=torch.cuda.current_device())
        joiner.join(self.opts.timeout_s)
        return communicator

    def reset_prefix_cache(self) -> None:
        self._post("/reset_prefix_cache", {})

    def close(self) -> None:
        pass  # the server outlives the trainer; stop it with POST /shutdown or by ending its process

    # ------------------------------------------------------------------------------------------ HTTP
    def _post(self, path: str, payload: dict | bytes) -> dict:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        kind = "application/octet-stream" if isinstance(payload, bytes) else "application/json"
        request = urllib.request.Request(self.url + path, data=data, method="POST", headers={"Content-Type": kind})
        return self._send(request, path)

    def _send(self, request, what: str) -> dict:
        try:
            with urllib.request.urlopen(request, timeout=self.opts.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise EngineError(f"server {self.url}{what}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise EngineError(f"server {self.url}{what}: {e} (timeout {self.opts.timeout_s:g} s)") from None

    def _wait_until_healthy(self) -> dict:
        deadline = time.monotonic() + self.opts.timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=10) as response:
                    return json.loads(response.read())
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = e
                time.sleep(1.0)
        raise EngineError(f"no reasoner server answered at {self.url} within {self.opts.timeout_s:g} s ({last}); "
                          "start one with `reasoner serve model=...`")


def _local_address(url: str) -> str:
    """This machine's address as the server sees it (the interface that routes to the server)."""
    import socket

    host = urlparse(url).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]
