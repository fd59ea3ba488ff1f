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

Security: whoever can call it can replace the policy's weights, read prompts and completions, make the workers
join a NCCL group (whose store vLLM unpickles) or stop it. So every endpoint requires a shared secret when one is
configured — `Authorization: Bearer <token>`, compared in constant time — and a server bound to anything but a
loopback address refuses to start without one. The token comes from `token_file` or `$REASONER_SERVE_TOKEN`,
never from the config itself (configs are saved next to runs); trainers send the same secret
(`engine.vllm.server_token_file` or the same variable). `tls_cert` / `tls_key` serve HTTPS (then use https://
URLs, and `engine.vllm.server_ca_file` for a private CA). Request bodies are bounded (`max_request_mb`); a
missing, negative or oversized `Content-Length` is refused before anything is read.

One engine per server (start one server per group of GPUs to scale out rollouts).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
import socket
import ssl
import threading
from dataclasses import asdict, dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from reasoner.config import ConfigError
from reasoner.rollout.base import SamplingParams
from reasoner.rollout.vllm_options import VLLMOptions

TOKEN_ENV = "REASONER_SERVE_TOKEN"


@dataclass
class ServeConfig:
    model: str = ""                        # local folder or hub id of the model to serve
    host: str = "127.0.0.1"                # anything but loopback needs a token
    port: int = 8000
    token_file: str | None = None          # the shared secret (first line); else $REASONER_SERVE_TOKEN
    tls_cert: str | None = None            # PEM certificate and key: serve HTTPS
    tls_key: str | None = None
    max_request_mb: float = 65536.0        # largest request body (a full weight push in `bytes` transport)
    vllm: VLLMOptions = field(default_factory=VLLMOptions)  # the served engine's options (mode is ignored)


def read_token(token_file: str | None) -> str | None:
    """The shared secret from `token_file` (its first line) or `$REASONER_SERVE_TOKEN`; None when neither is set."""
    if token_file:
        try:
            token = Path(token_file).read_text().splitlines()[0].strip() if Path(token_file).stat().st_size else ""
        except OSError as e:
            raise ConfigError(f"token_file {token_file}: cannot read it ({e.strerror})") from None
        if not token:
            raise ConfigError(f"token_file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


class EngineServer:
    """Owns the engine and the HTTP server; `serve_forever` blocks until `/shutdown`."""

    def __init__(self, cfg: ServeConfig, engine=None):
        if not cfg.model:
            raise ConfigError("serve: model is empty: give a model folder or hub id (model=...)")
        self.cfg = cfg
        self.token = read_token(cfg.token_file)
        if self.token is None and not is_loopback(cfg.host):
            raise ConfigError(f"serve: host={cfg.host} is reachable from other machines, and anyone who reaches the "
                              f"server can replace the policy's weights: set a shared secret in ${TOKEN_ENV} or "
                              f"token_file=PATH (trainers send the same one), or bind to 127.0.0.1")
        if bool(cfg.tls_cert) != bool(cfg.tls_key):
            raise ConfigError("serve: tls_cert and tls_key go together (a PEM certificate and its key)")
        self.max_request_bytes = int(cfg.max_request_mb * 2**20)
        # Everything above is checked before the model loads.
        self.engine = engine if engine is not None else build_engine(cfg)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((cfg.host, cfg.port), _handler(self))
        self.httpd.daemon_threads = True
        if cfg.tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{'https' if self.cfg.tls_cert else 'http'}://{host}:{port}"

    def authorized(self, header: str | None) -> bool:
        """Whether an `Authorization` header carries the shared secret (always, when none is configured)."""
        if self.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

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
    from reasoner.rollout.vllm_engine import VLLMEngine, served_eos_ids

    opts = replace(cfg.vllm, mode="colocate", server_url=None)
    return VLLMEngine(cfg.model, opts, dtype=opts.dtype, eos_ids=served_eos_ids(cfg.model), serving=True)


def _handler(server: EngineServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if not self._authorized():
                return
            if self.path == "/health":
                self._reply(server.health())
            else:
                self._reply({"error": f"unknown path {self.path}"}, HTTPStatus.NOT_FOUND)

        def do_POST(self):
            if not self._authorized():
                return
            path, _, query = self.path.partition("?")
            body = self._body()
            if body is None:
                return
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

        def _authorized(self) -> bool:
            if server.authorized(self.headers.get("Authorization")):
                return True
            self.close_connection = True
            self._reply({"error": "unauthorized: send the server's shared secret as 'Authorization: Bearer ...'"},
                        HTTPStatus.UNAUTHORIZED)
            return False

        def _body(self) -> bytes | None:
            """The request body, or None after refusing a bad `Content-Length` (nothing is read then)."""
            raw = self.headers.get("Content-Length", "0") or "0"
            try:
                length = int(raw)
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                self._reply({"error": f"bad Content-Length {raw!r}"}, HTTPStatus.BAD_REQUEST)
                return None
            if length > server.max_request_bytes:
                self.close_connection = True
                self._reply({"error": f"request body of {length} bytes is over the server's limit "
                                      f"({server.max_request_bytes} bytes, max_request_mb)"},
                            HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                return None
            return self.rfile.read(length)

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
