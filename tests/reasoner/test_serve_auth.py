"""`reasoner serve` security without vLLM: a fake engine behind the real HTTP server and the real client.

No token and a non-loopback host: refused before any model loads. With a token: every endpoint needs it
(compared in constant time), a wrong one changes nothing, the trainer's client sends it. Bad Content-Length
values are refused before anything is read.
"""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reasoner.config import ConfigError
from reasoner.rollout import EngineError
from reasoner.rollout.server import EngineServer, ServeConfig
from reasoner.rollout.server_client import ServerConnection

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


class FakeEngine:
    class opts:  # noqa: N801 - mirrors VLLMOptions' attribute
        tensor_parallel_size = 1
        timeout_s = 5.0

    def __init__(self):
        self.loaded: list[bytes] = []
        self.closed = False

    def served_dtype(self) -> str:
        return "float32"

    def load_encoded(self, body, transport, *, repack_tied_head=True):
        self.loaded.append(body)
        return 3

    def reset_prefix_cache(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.delenv("REASONER_SERVE_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    engine = FakeEngine()
    srv = EngineServer(ServeConfig(model="fake", port=0, token_file=str(token_file), max_request_mb=1),
                       engine=engine)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, engine
    srv.httpd.shutdown()
    thread.join(5)


def _request(srv, method, path, body=b"", headers=None):
    host, port = srv.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request(method, path, body=body, headers=headers or {})
    reply = conn.getresponse()
    data = reply.read()
    conn.close()
    return reply.status, json.loads(data or b"{}")


def test_a_non_loopback_server_without_a_token_refuses_to_start(monkeypatch):
    monkeypatch.delenv("REASONER_SERVE_TOKEN", raising=False)
    # engine=None would build a vLLM engine (not installed here): the refusal must come before that
    with pytest.raises(ConfigError, match="host=0.0.0.0 is reachable from other machines.*REASONER_SERVE_TOKEN"):
        EngineServer(ServeConfig(model="fake", host="0.0.0.0", port=0), engine=None)
    monkeypatch.setenv("REASONER_SERVE_TOKEN", TOKEN)
    srv = EngineServer(ServeConfig(model="fake", host="0.0.0.0", port=0), engine=FakeEngine())
    assert srv.token == TOKEN
    srv.httpd.server_close()


def test_the_cli_says_so_in_one_line_before_loading_any_model():
    env = {k: v for k, v in os.environ.items() if k != "REASONER_SERVE_TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "reasoner", "serve", "model=/nonexistent", "host=0.0.0.0",
                           "port=0"], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "shared secret" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_every_endpoint_needs_the_token_and_a_wrong_one_changes_nothing(server, header):
    srv, engine = server
    headers = {"Authorization": header} if header else {}
    assert _request(srv, "GET", "/health", headers=headers)[0] == 401
    for path in ("/weights", "/generate", "/weights/nccl/init", "/reset_prefix_cache", "/shutdown"):
        status, reply = _request(srv, "POST", path, b"{}", headers)
        assert status == 401 and "unauthorized" in reply["error"], path
    assert engine.loaded == []
    assert _request(srv, "GET", "/health", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200  # still up


def test_the_right_token_works_and_the_client_sends_it(server):
    srv, engine = server
    status, reply = _request(srv, "POST", "/weights", b"weights", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and reply == {"loaded": 3} and engine.loaded == [b"weights"]
    conn = ServerConnection(srv.url, timeout_s=5, token=TOKEN)
    assert conn.info["model"] == "fake"
    assert conn.post("/reset_prefix_cache", {}) == {"ok": True}
    with pytest.raises(EngineError, match="refused this trainer's credentials"):
        ServerConnection(srv.url, timeout_s=5, token="wrong")


@pytest.mark.parametrize("length, status", [("-1", 400), ("abc", 400), (str(2 * 2**20), 413)])
def test_bad_content_lengths_are_refused_before_reading(server, length, status):
    srv, engine = server
    host, port = srv.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.putrequest("POST", "/weights")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Length", length)
    conn.endheaders()
    reply = conn.getresponse()
    assert reply.status == status
    conn.close()
    assert engine.loaded == []
