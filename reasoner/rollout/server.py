"""`reasoner serve`: a vLLM engine in its own process (other GPUs, another node) that trainers push weights to.

A small HTTP/JSON server from the standard library around one `VLLMEngine`. Requests are served one at a time
(a lock around the engine: `vllm.LLM` is not thread-safe); several trainer ranks may call it, each for its own
prompts. Endpoints:

    GET  /health               -> {"ok": true, "model": ..., "workers": N, "dtype": "float32"}
    POST /generate             {"prompts": [[ids]], "params": {...SamplingParams}} -> {"completions": [[...]]}
    POST /weights              body: safetensors bytes (CPU / small models); loads them, resets the prefix cache
    POST /weights/nccl/init    {"host", "port", "world_size"}: join the trainer's NCCL group (GPU)
    POST /weights/nccl         {"metadata": [[name, dtype, shape]]}: receive the trainer's broadcast, reset cache
    POST /reset_prefix_cache
    POST /shutdown

Simplified on purpose: no authentication and no TLS, so bind it to a private network (the default host is
127.0.0.1); one engine per server (start one server per group of GPUs to scale out rollouts).
"""
from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reasoner.rollout.base import SamplingParams


@dataclass
class ServeConfig:
    model: str = ""                        # local folder or hub id of the model to serve
    host: str = "127.0.0.1"
    port: int = 8000
    vllm: dict[str, Any] = field(default_factory=dict)   # VLLMOptions (reasoner.rollout.vllm_engine)


class EngineServer:
    """Owns the engine and the HTTP server; `serve_forever` blocks until `/shutdown`."""

    def __init__(self, cfg: ServeConfig, engine=None):
        if not cfg.model:
            raise ValueError("serve: model is empty: give a model folder or hub id (model=...)")
        self.cfg = cfg
        self.engine = engine if engine is not None else build_engine(cfg)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((cfg.host, cfg.port), _handler(self))
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()
            self.engine.close()

    # ------------------------------------------------------------------------------------------ operations
    def health(self) -> dict:
        return {"ok": True, "model": self.cfg.model, "workers": self.engine.opts.tensor_parallel_size,
                "dtype": self.engine.served_dtype()}

    def generate(self, request: dict) -> dict:
        params = SamplingParams(**request["params"])
        with self.lock:
            groups = self.engine.generate(request["prompts"], params)
        return {"completions": [[asdict(c) for c in group] for group in groups]}

    def load_bytes(self, body: bytes, repack_tied_head: bool) -> dict:
        with self.lock:
            n = self.engine.load_encoded(body, "bytes", repack_tied_head=repack_tied_head)
            self.engine.reset_prefix_cache()
        return {"loaded": n}

    def init_nccl(self, request: dict) -> dict:
        with self.lock:
            self.engine._call("init_weight_group", self.engine.llm.collective_rpc, "reasoner_init_weight_group",
                              timeout=self.engine.opts.timeout_s,
                              args=(request["host"], int(request["port"]), 1, int(request["world_size"])))
        return {"ok": True}

    def receive_nccl(self, request: dict) -> dict:
        with self.lock:
            counts = self.engine._call("receive_weights", self.engine.llm.collective_rpc, "reasoner_receive_weights",
                                       timeout=self.engine.opts.timeout_s,
                                       args=(request["metadata"], bool(request.get("repack_tied_head", True))))
            self.engine.reset_prefix_cache()
        return {"loaded": int(counts[0]) if counts else 0}

    def reset_prefix_cache(self) -> dict:
        with self.lock:
            self.engine.reset_prefix_cache()
        return {"ok": True}

    def shutdown(self) -> dict:
        threading.Thread(target=self.httpd.shutdown, daemon=True).start()
        return {"ok": True}


def build_engine(cfg: ServeConfig):
    from reasoner.rollout.vllm_engine import VLLMEngine, parse_options, served_eos_ids

    opts = parse_options({**cfg.vllm, "mode": "colocate"})
    return VLLMEngine(cfg.model, opts, dtype=opts.dtype, eos_ids=served_eos_ids(cfg.model), serving=True)


def _handler(server: EngineServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/health":
                self._reply(server.health())
            else:
                self._reply({"error": f"unknown path {self.path}"}, HTTPStatus.NOT_FOUND)

        def do_POST(self):
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            try:
                if path == "/weights":
                    self._reply(server.load_bytes(body, repack_tied_head="repack_tied_head=0" not in query))
                    return
                request = json.loads(body or b"{}")
                routes = {"/generate": lambda: server.generate(request),
                          "/weights/nccl/init": lambda: server.init_nccl(request),
                          "/weights/nccl": lambda: server.receive_nccl(request),
                          "/reset_prefix_cache": server.reset_prefix_cache, "/shutdown": server.shutdown}
                if path not in routes:
                    self._reply({"error": f"unknown path {path}"}, HTTPStatus.NOT_FOUND)
                    return
                self._reply(routes[path]())
            except Exception as e:  # the client gets the reason; the server keeps serving
                self._reply({"error": f"{type(e).__name__}: {e}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

        def _reply(self, payload: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - quiet: one line per request would flood the log
            pass

    return Handler
