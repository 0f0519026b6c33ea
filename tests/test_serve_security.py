"""The policy server on a robot network: API keys, TLS, health check, connection/idle/rate limits, SIGTERM drain.

Everything runs on 127.0.0.1 with servers on free ports and a stand-in policy; every wait is bounded in time.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from helpers.serve import FakePolicy
from helpers.tls import self_signed_certificate
from vlajepa.cli import main
from vlajepa.commands.evaluate import parse_policy
from vlajepa.constants import OBS_STATE
from vlajepa.serve import (
    ApiKeyError,
    ApiKeys,
    AuthenticationError,
    Client,
    RemotePolicy,
    RetryConfig,
    ServerConfig,
    ServerThread,
    packb,
    unpackb,
)

ROOT = Path(__file__).resolve().parents[1]
KEY = "observation.images.corner2"
API_KEY = "k3y-for-the-robot-0123456789abcdef"
OTHER_KEY = "second-key-rotating-in-fedcba9876543210"
WRONG_KEY = "wrong-key-0000000000000000000000000"
FAST_FAIL = RetryConfig(max_attempts=3, timeout_s=2.0, initial_backoff_s=0.01)


def _obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        KEY: rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        OBS_STATE: rng.normal(size=4).astype(np.float32),
        "prompt": "push the block",
    }


def _serve(policy: FakePolicy | None = None, keys: tuple[str, ...] = (API_KEY,), **config) -> ServerThread:
    policy = policy or FakePolicy()
    api_keys = ApiKeys(keys) if keys else None
    return ServerThread(policy, policy.serving_spec(), ServerConfig(port=0, api_keys=api_keys, **config))


# websockets >= 17 warns when a connection kept outside a `with` block does not opt in with legacy=True.
LEGACY = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}


def _raw(url: str, headers: dict[str, str] | None = None, **kwargs):
    return connect(url, compression=None, open_timeout=5, proxy=None, additional_headers=headers, **kwargs)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Api-Key {key}"}


# --- API keys -------------------------------------------------------------------------------------------------


def test_key_file_format_and_errors_never_show_a_key(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# robot cell 3\n\n{API_KEY}\n  {OTHER_KEY}  \n")
    keys = ApiKeys.from_file(path)
    assert len(keys) == 2 and API_KEY not in repr(keys)
    assert keys.accepts(f"Api-Key {OTHER_KEY}") and keys.accepts(f"api-key {API_KEY}")
    assert not keys.accepts(f"Bearer {API_KEY}") and not keys.accepts(API_KEY) and not keys.accepts(None)
    assert not keys.accepts(f"Api-Key {API_KEY[:-1]}") and not keys.accepts(f"Api-Key {API_KEY}x")

    path.write_text(f"{API_KEY}\nshort-secret\n")
    with pytest.raises(ApiKeyError, match=f"{re.escape(str(path))} line 2: API keys must have at least 16") as info:
        ApiKeys.from_file(path)
    assert "short-secret" not in str(info.value)
    path.write_text("# only a comment\n")
    with pytest.raises(ApiKeyError, match="holds no key"):
        ApiKeys.from_file(path)


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        (None, ""),
        (_auth(WRONG_KEY), ""),
        ({"Authorization": f"Bearer {API_KEY}"}, ""),
        (None, f"?api_key={API_KEY}"),
        (None, f"?key={API_KEY}&Authorization=Api-Key%20{API_KEY}"),
    ],
    ids=["no-key", "wrong-key", "wrong-scheme", "query-api_key", "query-other"],
)
def test_handshakes_without_a_valid_key_header_get_401(headers, query):
    with _serve() as server:
        with pytest.raises(InvalidStatus) as info:
            _raw(server.url + "/" + query, headers)
        assert info.value.response.status_code == 401
        assert info.value.response.headers["WWW-Authenticate"] == "Api-Key"
        assert server.server.refused["unauthorized"] == 1
        with _raw(server.url, _auth(API_KEY)) as ws:  # the server is unaffected
            assert unpackb(ws.recv(timeout=5))["action_dim"] == 4


def test_clients_with_the_key_are_served(tmp_path, monkeypatch):
    key_file = tmp_path / "client-key"
    key_file.write_text(f"{OTHER_KEY}\n")
    with _serve(keys=(API_KEY, OTHER_KEY)) as server:
        with Client(server.url, api_key=API_KEY) as client:
            assert client.infer(_obs())["actions"].shape == (5, 4)
        with Client(server.url, api_key_file=key_file) as client:  # the second key of the server
            assert client.infer(_obs())["actions"].shape == (5, 4)
        monkeypatch.setenv("VLAJEPA_API_KEY", API_KEY)
        with RemotePolicy(server.url) as remote:  # the environment's key, as evaluation workers get it
            assert remote.predict_action_chunk(_obs()).shape == (5, 4)
        with pytest.raises(ValueError, match="not both"):
            Client(server.url, api_key=API_KEY, api_key_file=key_file)


def test_a_refused_key_fails_at_once_with_a_clear_error(monkeypatch):
    monkeypatch.delenv("VLAJEPA_API_KEY", raising=False)
    with _serve() as server:
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match="HTTP 401.*no API key was sent"):
            Client(server.url)  # default retries: a refusal is not retried
        with pytest.raises(AuthenticationError, match="the API key was refused"):
            Client(server.url, api_key=WRONG_KEY)
        assert time.monotonic() - started < 2
        assert server.server.refused["unauthorized"] == 2


def test_keys_never_reach_the_logs(caplog):
    caplog.set_level(logging.DEBUG)
    with _serve() as server:
        with Client(server.url, api_key=API_KEY) as client:
            client.infer(_obs())
        with pytest.raises(AuthenticationError):
            Client(server.url, api_key=WRONG_KEY)
    assert API_KEY not in caplog.text and WRONG_KEY not in caplog.text
    assert "Authorization: [redacted]" in caplog.text  # the handshake was logged at DEBUG, without the key


def test_the_serve_command_reads_keys_from_a_file_only(tmp_path, capsys):
    bad = tmp_path / "keys"
    bad.write_text(f"{API_KEY}\nshort-secret\n")
    assert main(["serve", "--checkpoint", str(tmp_path), "--api-key-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad} line 2" in err and "short-secret" not in err and len(err.strip().splitlines()) == 1
    assert main(["serve", "--checkpoint", str(tmp_path), "--api-key", API_KEY]) == 2  # no such option
    capsys.readouterr()
    assert main(["serve", "--checkpoint", str(tmp_path), "--tls-cert", str(bad)]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


def test_eval_passes_the_key_file_and_ca_to_remote_policies_only():
    source = parse_policy("remote:wss://robot:8000", api_key_file="keys", ca_file="ca.pem")
    assert source.kwargs == {"url": "wss://robot:8000", "api_key_file": "keys", "ca_file": "ca.pem"}
    with pytest.raises(ValueError, match="--api-key-file applies to remote policies"):
        parse_policy("expert", api_key_file="keys")


# --- TLS ------------------------------------------------------------------------------------------------------


def test_tls_round_trip_with_a_self_signed_certificate(tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    with _serve(tls_cert=cert, tls_key=key) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        with Client(server.url, api_key=API_KEY, ca_file=cert) as client:
            reply = client.infer(_obs())
            assert reply["actions"].shape == (5, 4) and np.isfinite(reply["actions"]).all()
        with pytest.raises(AuthenticationError, match="failed verification"):
            Client(server.url, api_key=API_KEY)  # the system's CAs do not know this certificate
        with pytest.raises(ConnectionError):
            Client(server.url.replace("wss://", "ws://"), api_key=API_KEY, retry=FAST_FAIL)  # no plaintext
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # how clients without a ca_file option trust a private CA
        with Client(server.url, api_key=API_KEY) as client:
            assert client.infer(_obs())["actions"].shape == (5, 4)
        context = ssl.create_default_context(cafile=str(cert))
        url = f"https://127.0.0.1:{server.port}/healthz"
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            assert response.status == 200 and response.read() == b"ok\n"
    with pytest.raises(ValueError, match="needs both"):
        ServerConfig(tls_cert=cert)


# --- health and limits ----------------------------------------------------------------------------------------


def test_healthz_answers_while_a_request_is_in_flight():
    policy = FakePolicy(delay_s=1.5)
    with _serve(policy) as server, Client(server.url, api_key=API_KEY) as client:
        replies = []
        worker = threading.Thread(target=lambda: replies.append(client.infer(_obs())))
        worker.start()
        deadline = time.monotonic() + 5
        while not policy.batch_sizes and time.monotonic() < deadline:  # the forward pass has started
            time.sleep(0.01)
        assert policy.batch_sizes, "the request never reached the policy"
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
            assert response.status == 200 and response.read() == b"ok\n"  # no key needed
        assert time.monotonic() - started < 0.5 and worker.is_alive()
        worker.join(timeout=10)
        assert replies and replies[0]["actions"].shape == (5, 4)


def test_connection_limit_counts_admitted_connections_only():
    with _serve(max_connections=2) as server:
        for _ in range(3):  # refused handshakes take no slot
            with pytest.raises(AuthenticationError):
                Client(server.url, api_key=WRONG_KEY)
        barrier, outcomes, opened = threading.Barrier(6), [], []

        def attempt() -> None:  # six simultaneous handshakes: exactly two get in
            barrier.wait(timeout=5)
            try:
                opened.append(_raw(server.url, _auth(API_KEY), **LEGACY))
                outcomes.append(200)
            except InvalidStatus as err:
                outcomes.append(err.response.status_code)

        threads = [threading.Thread(target=attempt) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert sorted(outcomes) == [200, 200, 503, 503, 503, 503]
        assert server.server.refused["over_capacity"] == 4
        opened.pop().close()
        deadline = time.monotonic() + 5
        while server.server.connections > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with Client(server.url, api_key=API_KEY) as client:  # a freed slot is reusable
            assert client.infer(_obs())["actions"].shape == (5, 4)
        for ws in opened:
            ws.close()


def test_idle_connections_are_closed():
    with _serve(idle_timeout_s=0.3) as server, _raw(server.url, _auth(API_KEY)) as ws:
        ws.recv(timeout=5)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and (info.value.rcvd.code, info.value.rcvd.reason) == (1000, "idle timeout")
        assert 0.25 < time.monotonic() - started < 3


def test_request_rate_limit_per_connection():
    with _serve(max_requests_per_s=2) as server, _raw(server.url, _auth(API_KEY)) as ws:
        ws.recv(timeout=5)
        started, replies = time.monotonic(), []
        for _ in range(12):
            ws.send(packb({"__ctrl__": "episode_end"}))
            replies.append(ws.recv(timeout=5))
        answered = [r for r in replies if not isinstance(r, str)]
        limited = [r for r in replies if isinstance(r, str)]
        # a burst of 2, then 2 per second for as long as the 12 round trips took
        assert 2 <= len(answered) <= 2 + int(2 * (time.monotonic() - started)) + 1
        assert limited and all(r.startswith("rate limit: more than 2 requests per second") for r in limited)
        with Client(server.url, api_key=API_KEY) as other:  # the limit is per connection
            assert other.infer(_obs())["actions"].shape == (5, 4)
        time.sleep(0.6)  # the bucket refills
        ws.send(packb(_obs()))
        assert unpackb(ws.recv(timeout=5))["actions"].shape == (5, 4)


# --- SIGTERM drain --------------------------------------------------------------------------------------------

SERVE_SCRIPT = """
import asyncio, sys
from helpers.serve import FakePolicy
from vlajepa.commands.serve import serve_until_signal
from vlajepa.serve import PolicyServer, ServerConfig

policy = FakePolicy(delay_s=float(sys.argv[1]))
asyncio.run(serve_until_signal(PolicyServer(policy, policy.serving_spec(), ServerConfig(port=0))))
"""


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_0():
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, "1.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        line = process.stdout.readline()  # "serving FakePolicy on ws://127.0.0.1:PORT (health: ...)"
        match = re.search(r" on (ws://\S+) ", line)
        assert match, f"unexpected first line {line!r}; stderr: {process.stderr.read()[-2000:]}"
        url = match.group(1)
        idle, busy = Client(url), Client(url)
        replies: list[dict] = []
        worker = threading.Thread(target=lambda: replies.append(busy.infer(_obs())))
        worker.start()
        time.sleep(0.4)  # the request is now inside the 1.5 s forward pass
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(ConnectionError):  # no new connections while draining
            Client(url, retry=RetryConfig(max_attempts=2, timeout_s=1.0, initial_backoff_s=0.01))
        worker.join(timeout=10)
        assert replies and replies[0]["actions"].shape == (5, 4)  # the in-flight request was answered
        with pytest.raises(ConnectionError, match="closed the connection"):
            idle.infer(_obs())
        assert process.wait(timeout=15) == 0
        assert "server stopped" in process.stderr.read()
        idle.close()
        busy.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
