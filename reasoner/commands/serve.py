"""`reasoner serve model=PATH [port=8000] [host=...] [vllm.KEY=VALUE ...]`: a vLLM rollout server.

Trainers use it with `engine.name=vllm engine.vllm.mode=server engine.vllm.server_url=http://HOST:PORT`;
they push their weights to it after every optimizer step (see reasoner.rollout.server).
"""
from __future__ import annotations

from reasoner.commands import add_config_arguments, stage_config


def configure(parser) -> None:
    add_config_arguments(parser)


def run(args) -> int:
    from reasoner.rollout.server import EngineServer, ServeConfig

    cfg = stage_config(args, ServeConfig)
    if cfg is None:
        return 0
    server = EngineServer(cfg)
    print(f"[serve] {cfg.model} at {server.url} (POST /shutdown to stop)", flush=True)
    server.serve_forever()
    return 0
