"""The trainer's side of server mode: a `RolloutEngine` that calls `reasoner serve` processes over HTTP.

`engine.name: vllm` with `engine.vllm: {mode: server, server_url: "http://a:8000,http://b:8000"}`. With
several servers, rank r generates on server r mod n, so rollout capacity grows with the number of servers; rank
0 pushes the weights to every server after each optimizer step (the trainer holds a barrier after the sync, so
no rank samples before the new weights are in place). Weight transports:
- `bytes` (default without a GPU): one safetensors body per sync; fine for small models and CPU tests;
- `nccl` (default with a GPU): the trainer joins each server's workers in a NCCL group (vLLM's
  `StatelessProcessGroup` + `PyNcclCommunicator`, as in vLLM's RLHF example) and broadcasts each tensor; the
  HTTP call that makes the server receive runs in a thread while this process broadcasts.
Every HTTP call has a timeout (`timeout_s`): a server that hangs or dies becomes an `EngineError`.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import urlparse

import torch

from reasoner.rollout.base import Completion, EngineError, RolloutEngine, SamplingParams, eos_token_ids
from reasoner.rollout.server import read_token
from reasoner.rollout.vllm_options import VLLMOptions


class RemoteEngine(RolloutEngine):
    """Samples on `reasoner serve` processes; rank 0 pushes the trainer's weights to every server."""

    owns_weights = True

    def __init__(self, urls: Sequence[str], opts: VLLMOptions, *, eos_ids: Sequence[int] = ()):
        if not urls:
            raise ValueError("engine.vllm.server_url: no server given")
        self.opts = opts
        self.eos_ids = list(eos_ids)
        self.rank = int(os.environ.get("RANK", "0"))
        self.transport = opts.weight_transport if opts.weight_transport != "auto" else \
            ("nccl" if torch.cuda.is_available() else "bytes")
        if self.transport not in ("bytes", "nccl"):
            raise ValueError(f"engine.vllm.weight_transport={self.transport} is not available in server mode "
                             "(bytes or nccl)")
        token = read_token(opts.server_token_file)
        tls = ssl.create_default_context(cafile=opts.server_ca_file) if opts.server_ca_file else None
        self.servers = [ServerConnection(url, opts.timeout_s, token=token, tls=tls) for url in urls]
        self.generator = self.servers[self.rank % len(self.servers)]  # the server this rank samples from
        dtypes = {s.info.get("dtype", "") for s in self.servers}
        self.dtype = "bfloat16" if dtypes & {"bfloat16", "float16"} else dtypes.pop()  # sets the probe thresholds

    @classmethod
    def from_model(cls, model, tokenizer, opts: VLLMOptions) -> RemoteEngine:
        engine = cls(opts.server_urls, opts, eos_ids=eos_token_ids(model, tokenizer))
        engine.sync_weights(model)  # the servers now serve exactly the trainer's weights
        return engine

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Completion]]:
        request = asdict(params)
        eos = [] if params.ignore_eos else self.eos_ids
        request["stop_token_ids"] = list(dict.fromkeys(list(params.stop_token_ids) + eos))
        reply = self.generator.post("/generate", {"prompts": [list(p) for p in prompts], "params": request})
        return [[Completion(**c) for c in group] for group in reply["completions"]]

    def sync_weights(self, model) -> None:
        if self.rank != 0:
            return  # one push per sync; the trainer's barrier makes the other ranks wait for it
        self.load_weights([(name, p.detach()) for name, p in model.named_parameters()])

    def load_weights(self, weights: list[tuple[str, torch.Tensor]], *, repack_tied_head: bool = True) -> int:
        """Send the weights to every server (each resets its prefix cache); returns tensors loaded per server."""
        if self.transport == "bytes":
            from safetensors.torch import save
            body = save({name: t.contiguous().cpu() for name, t in weights})
            path = "/weights" + ("" if repack_tied_head else "?repack_tied_head=0")
            counts = [int(server.post(path, body)["loaded"]) for server in self.servers]
        else:
            port = int(os.environ.get("REASONER_WEIGHT_SYNC_PORT", "51216"))
            counts = [server.broadcast(weights, repack_tied_head, port + i) for i, server in enumerate(self.servers)]
        return min(counts)

    def reset_prefix_cache(self) -> None:
        for server in self.servers:
            server.post("/reset_prefix_cache", {})

    def close(self) -> None:
        pass  # servers outlive the trainer; stop one with POST /shutdown or by ending its process


class ServerConnection:
    """One `reasoner serve` process: JSON/bytes POSTs with a timeout and the shared secret, and its NCCL group."""

    def __init__(self, url: str, timeout_s: float, *, token: str | None = None, tls: ssl.SSLContext | None = None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._tls = tls
        self._nccl = None
        self.info = self._wait_until_healthy()

    def post(self, path: str, payload: dict | bytes) -> dict:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        kind = "application/octet-stream" if isinstance(payload, bytes) else "application/json"
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": kind, **self._headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._tls) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise EngineError(f"server {self.url}{path}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise EngineError(f"server {self.url}{path}: {e} (timeout {self.timeout_s:g} s)") from None

    def broadcast(self, weights: list[tuple[str, torch.Tensor]], repack_tied_head: bool, port: int) -> int:
        """Send `weights` over NCCL while the server receives them (its HTTP call runs in a thread)."""
        if self._nccl is None:
            self._nccl = self._join_weight_group(port)
        metadata = [(name, str(t.dtype).removeprefix("torch."), list(t.shape)) for name, t in weights]
        reply = self._in_thread("/weights/nccl", {"metadata": metadata, "repack_tied_head": repack_tied_head})
        for _, tensor in weights:
            self._nccl.broadcast(tensor.contiguous(), src=0, stream=torch.cuda.current_stream())
        torch.cuda.synchronize()
        return int(self._join(reply, "the NCCL weight update")["loaded"])

    def _join_weight_group(self, port: int):
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        host = os.environ.get("REASONER_WEIGHT_SYNC_HOST") or _local_address(self.url)
        world_size = 1 + int(self.info.get("workers", 1))
        reply = self._in_thread("/weights/nccl/init", {"host": host, "port": port, "world_size": world_size})
        group = StatelessProcessGroup.create(host=host, port=port, rank=0, world_size=world_size)
        communicator = PyNcclCommunicator(group, device=torch.cuda.current_device())
        self._join(reply, "joining the NCCL weight group")
        return communicator

    def _in_thread(self, path: str, payload: dict) -> dict[str, Any]:
        box: dict[str, Any] = {}

        def call():
            try:
                box["reply"] = self.post(path, payload)
            except EngineError as e:
                box["error"] = e

        box["thread"] = threading.Thread(target=call, daemon=True)
        box["thread"].start()
        return box

    def _join(self, box: dict[str, Any], what: str) -> dict:
        box["thread"].join(self.timeout_s)
        if "error" in box:
            raise box["error"]
        if "reply" not in box:
            raise EngineError(f"server {self.url} did not confirm {what} within {self.timeout_s:g} s")
        return box["reply"]

    def _wait_until_healthy(self) -> dict:
        deadline = time.monotonic() + self.timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(self.url + "/health", headers=self._headers)
                with urllib.request.urlopen(request, timeout=10, context=self._tls) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    raise EngineError(f"server {self.url} refused this trainer's credentials: set the server's shared "
                                      "secret in $REASONER_SERVE_TOKEN or engine.vllm.server_token_file") from None
                last = e
                time.sleep(1.0)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = e
                time.sleep(1.0)
        raise EngineError(f"no reasoner server answered at {self.url} within {self.timeout_s:g} s ({last}); "
                          "start one with `reasoner serve model=...`")


def _local_address(url: str) -> str:
    """This machine's address as the server sees it (the interface that routes to the server)."""
    host = urlparse(url).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]
