"""The policy server with a stand-in policy: protocol, errors, fuzzing, concurrency, seeding, batching.

Everything runs on 127.0.0.1 with servers on free ports; every loop is bounded in count, every wait in time.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import msgpack
import numpy as np
import pytest
import torch
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helpers.serve import FakePolicy
from vlajepa.constants import OBS_STATE, TASK
from vlajepa.serve import (
    ActionChunkBroker,
    Client,
    RemotePolicy,
    RetryConfig,
    ServerConfig,
    ServerError,
    ServerThread,
    packb,
    unpackb,
)

KEY = "observation.images.corner2"
FAST_FAIL = RetryConfig(max_attempts=3, timeout_s=2.0, initial_backoff_s=0.01)


def _obs(seed: int = 0, prompt: str = "push the block") -> dict:
    rng = np.random.default_rng(seed)
    return {
        KEY: rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        OBS_STATE: rng.normal(size=4).astype(np.float32),
        "prompt": prompt,
    }


def _in_process(policy: FakePolicy, seed: int, observations: list[dict]) -> list[np.ndarray]:
    """What the evaluation harness gets in-process: seed everything, reset, then predict in order."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    policy.reset()
    return [policy.predict_action_chunk({**o, TASK: o["prompt"]}) for o in observations]


def _serve(policy: FakePolicy, **config) -> ServerThread:
    return ServerThread(policy, policy.serving_spec(), ServerConfig(port=0, **config))


def _raw(url: str):
    return connect(url, compression=None, open_timeout=5, proxy=None)


def test_metadata_frame_healthz_and_reply_format():
    with _serve(FakePolicy()) as server, _raw(server.url) as ws:
        metadata = unpackb(ws.recv(timeout=5))
        assert metadata["action_dim"] == 4 and metadata["action_horizon"] == 5
        assert metadata["observation"][KEY]["shape"] == [16, 16, 3]
        ws.send(packb(_obs()))
        reply = unpackb(ws.recv(timeout=5))
        assert reply["actions"].shape == (5, 4) and reply["actions"].dtype == np.float32
        assert {"infer_ms", "queue_ms", "batch_size"} <= set(reply["server_timing"])
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
            assert response.status == 200 and response.read() == b"ok\n"


def test_remote_actions_equal_in_process_for_the_same_seed():
    observations = [_obs(i) for i in range(4)]
    expected = _in_process(FakePolicy(), 11, observations)
    with _serve(FakePolicy()) as server, RemotePolicy(server.url) as remote:
        for _ in range(2):  # a second episode with the same seed replays the first
            remote.reseed(11)
            remote.reset()
            for obs, want in zip(observations, expected, strict=True):
                np.testing.assert_array_equal(remote.predict_action_chunk(obs), want)


def test_new_connections_start_from_the_state_after_loading():
    with _serve(FakePolicy()) as server:
        with Client(server.url) as first:
            a = first.infer(_obs())["actions"]
            first.infer(_obs())  # advances this connection's random state only
        with Client(server.url) as second:
            np.testing.assert_array_equal(second.infer(_obs())["actions"], a)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop(KEY), "missing keys \\['observation.images.corner2'\\]"),
        (lambda o: o.update({KEY: o[KEY].astype(np.float32)}), "expected dtype uint8"),
        (lambda o: o.update({KEY: np.zeros((480, 640, 3), np.uint8)}), "image too large"),
        (lambda o: o.update({OBS_STATE: np.full(4, np.nan, np.float32)}), "NaN"),
        (lambda o: o.update({OBS_STATE: np.zeros(7, np.float32)}), "expected shape \\(4,\\)"),
        (lambda o: o.update({"prompt": 42}), "expected a string instruction, got int"),
    ],
)
def test_bad_requests_get_clear_errors_and_the_connection_survives(mutate, message):
    with _serve(FakePolicy()) as server, Client(server.url) as client:
        bad = _obs()
        mutate(bad)
        with pytest.raises(ServerError, match=message):
            client.infer(bad)
        assert client.infer(_obs())["actions"].shape == (5, 4)


def test_undecodable_frames_get_error_replies():
    with _serve(FakePolicy()) as server, _raw(server.url) as ws:
        ws.recv(timeout=5)
        for frame, message in [
            ("hello", "got a text frame"),
            (b"\xc1garbage", "not a valid msgpack message"),
            (packb(_obs())[:-10], "truncated"),
            (
                msgpack.packb({KEY: {b"__ndarray__": True, b"data": b"", b"dtype": "O", b"shape": [0]}}),
                "dtype",
            ),
        ]:
            ws.send(frame)
            reply = ws.recv(timeout=5)
            assert isinstance(reply, str) and message in reply, reply
        ws.send(packb(_obs()))
        assert unpackb(ws.recv(timeout=5))["actions"].shape == (5, 4)


def test_oversized_frame_closes_only_that_connection():
    with _serve(FakePolicy(), max_message_bytes=2**16) as server, Client(server.url) as bystander:
        with _raw(server.url) as ws:
            ws.recv(timeout=5)
            ws.send(packb({**_obs(), "padding": np.zeros(2**17, np.uint8)}))
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009  # message too big
        assert bystander.infer(_obs())["actions"].shape == (5, 4)


def test_abrupt_disconnects_do_not_disturb_other_clients():
    policy = FakePolicy(delay_s=0.05)
    with _serve(policy) as server, Client(server.url) as bystander:
        for _ in range(3):
            with _raw(server.url) as ws:
                ws.recv(timeout=5)
                ws.send(packb(_obs()))  # then vanish before the reply
                ws.socket.close()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # half a handshake
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"\x00\xff" * 100)
        expected = bystander.infer(_obs())["actions"]
        assert expected.shape == (5, 4) and np.isfinite(expected).all()


def _malformed(rng: np.random.Generator, valid: dict) -> bytes | str:
    """One message that is certainly not a valid request (the fuzz test's generator)."""
    kind = rng.integers(0, 12)
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 300)))
    if kind == 1:
        packed = packb(valid)
        return packed[: int(rng.integers(0, len(packed)))]
    if kind == 2:
        return msgpack.packb([1, 2, 3]) if rng.random() < 0.5 else msgpack.packb(int(rng.integers(-9, 9)))
    if kind == 3:
        return "text frame " * int(rng.integers(1, 50))
    obs = {k: v for k, v in valid.items()}
    if kind == 4:
        obs.pop(list(obs)[int(rng.integers(0, len(obs)))])
    elif kind == 5:
        dtype = rng.choice(["float32", "float64", "int16", "bool", "int8"])
        obs[KEY] = obs[KEY].astype(dtype)
    elif kind == 6:
        shape = tuple(int(n) for n in rng.integers(1, 200, size=int(rng.integers(1, 4))))
        obs[KEY] = np.zeros(shape if shape != (16, 16, 3) else (17, 16, 3), np.uint8)
    elif kind == 7:
        state = obs[OBS_STATE].copy()
        state[int(rng.integers(0, 4))] = rng.choice([np.nan, np.inf, -np.inf])
        obs[OBS_STATE] = state
    elif kind == 8:
        choices = [np.zeros(int(rng.integers(5, 9)), np.float32), np.arange(4), "state", None]
        obs[OBS_STATE] = choices[int(rng.integers(0, len(choices)))]
    elif kind == 9:
        obs["prompt"] = [None, 3, 2.5, ["a"], {"a": 1}, b"bytes", "x" * 3000][int(rng.integers(0, 7))]
    elif kind == 10:
        header = {b"__ndarray__": True, b"data": rng.bytes(8), b"dtype": "<f4", b"shape": [2]}
        corruptions = [
            (b"dtype", "O"), (b"dtype", "V4"), (b"dtype", "c8"), (b"dtype", "zz"), (b"dtype", 7),
            (b"shape", [-2]), (b"shape", [4]), (b"data", "str"),
        ]  # fmt: skip
        field, value = corruptions[int(rng.integers(0, len(corruptions)))]
        obs[OBS_STATE] = {**header, field: value}
    else:
        return msgpack.packb({"__ctrl__": rng.choice(["explode", "reseed"]), "seed": "not an int"})
    return packb(obs)


def test_fuzz_malformed_messages_then_valid_requests_still_work():
    rng = np.random.default_rng(1234)
    policy = FakePolicy(noise_scale=0.0)
    valid = _obs()
    want = policy.predict_action_chunk({**valid, TASK: valid["prompt"]})
    stop = threading.Event()
    bystander_replies: list[np.ndarray] = []

    with _serve(policy, max_requests_per_s=0) as server:  # as fast as possible: no per-connection rate limit

        def bystander() -> None:
            with Client(server.url) as client:
                for _ in range(500):  # bounded; usually stopped much earlier
                    if stop.is_set():
                        break
                    bystander_replies.append(client.infer(valid)["actions"])

        thread = threading.Thread(target=bystander)
        thread.start()
        try:
            with _raw(server.url) as ws:
                ws.recv(timeout=5)
                for _ in range(240):
                    ws.send(_malformed(rng, valid))
                    reply = ws.recv(timeout=10)
                    assert isinstance(reply, str) and reply, "a malformed message got a non-error reply"
                ws.send(packb(valid))
                np.testing.assert_array_equal(unpackb(ws.recv(timeout=10))["actions"], want)
        finally:
            stop.set()
            thread.join(timeout=30)
        with Client(server.url) as fresh:
            np.testing.assert_array_equal(fresh.infer(valid)["actions"], want)
    assert bystander_replies and all(np.array_equal(r, want) for r in bystander_replies)


class _OwnGeneratorPolicy(FakePolicy):
    """Draws noise from its own generator and exposes its state, as a policy with its own generator should."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.generator = torch.Generator().manual_seed(0)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def get_rng_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def predict_action_chunk_batch(self, observations: list[dict]) -> np.ndarray:
        noise = torch.randn(len(observations), self.chunk_length, self.action_dim, generator=self.generator)
        means = np.stack([self._mean(o) for o in observations])
        time.sleep(self.delay_s)
        return (means + self.noise_scale * noise.numpy()).astype(np.float32)


@pytest.mark.parametrize(
    "policy_class", [FakePolicy, _OwnGeneratorPolicy], ids=["global-rng", "own-generator"]
)
def test_eight_concurrent_clients_each_get_their_in_process_actions(policy_class):
    n_clients, n_requests = 8, 6
    observations = {c: [_obs(100 * c + i) for i in range(n_requests)] for c in range(n_clients)}
    expected = {}
    for c in range(n_clients):
        reference = policy_class()
        if hasattr(reference, "reseed"):
            reference.reseed(c)
        expected[c] = _in_process(reference, c, observations[c])

    def run(c: int, url: str) -> list[np.ndarray]:
        with RemotePolicy(url) as remote:
            remote.reseed(c)
            remote.reset()
            return [remote.predict_action_chunk(o) for o in observations[c]]

    with _serve(policy_class(delay_s=0.002)) as server, ThreadPoolExecutor(n_clients) as pool:
        results = dict(enumerate(pool.map(run, range(n_clients), [server.url] * n_clients)))
    for c in range(n_clients):
        for got, want in zip(results[c], expected[c], strict=True):
            np.testing.assert_array_equal(got, want)


def test_micro_batching_merges_concurrent_requests():
    policy = FakePolicy(noise_scale=0.0, delay_s=0.02)
    observations = [_obs(i) for i in range(8)]
    want = [policy.predict_action_chunk({**o, TASK: o["prompt"]}) for o in observations]
    policy.batch_sizes.clear()

    def run(i: int, url: str) -> list[np.ndarray]:
        with Client(url) as client:
            return [client.infer(observations[i])["actions"] for _ in range(5)]

    with _serve(policy, max_batch=8) as server, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8), [server.url] * 8))
    assert max(policy.batch_sizes) > 1
    for i, replies in enumerate(results):
        for reply in replies:
            np.testing.assert_array_equal(reply, want[i])


def test_control_messages():
    policy = FakePolicy()
    with _serve(policy) as server, Client(server.url) as client:
        client.reset()
        assert policy.resets == 1
        with _raw(server.url) as ws:
            ws.recv(timeout=5)
            for ctrl, ack in [("episode_start", "episode_start"), ("episode_end", "episode_end")]:
                ws.send(packb({"__ctrl__": ctrl}))
                assert unpackb(ws.recv(timeout=5)) == {"__ack__": ack}
            ws.send(packb({"__ctrl__": "metadata"}))
            assert unpackb(ws.recv(timeout=5))["metadata"] == client.metadata
            ws.send(packb({"__ctrl__": "reseed", "seed": 1.5}))
            assert ws.recv(timeout=5) == "invalid control message: 'reseed' needs an int 'seed', not 1.5"
        with pytest.raises(ServerError, match="unknown __ctrl__ 'fly'"):
            client._control("fly")


def test_policy_failures_are_reported_and_serving_continues():
    class Flaky(FakePolicy):
        def predict_action_chunk_batch(self, observations):
            if observations[0][TASK] == "explode":
                raise RuntimeError("boom")
            return super().predict_action_chunk_batch(observations)

    with _serve(Flaky()) as server, Client(server.url) as client:
        with pytest.raises(ServerError, match="policy error: RuntimeError: boom"):
            client.infer(_obs(prompt="explode"))
        assert client.infer(_obs())["actions"].shape == (5, 4)


def test_bad_policy_outputs_are_errors_not_actions():
    class Broken(FakePolicy):
        def predict_action_chunk_batch(self, observations):
            actions = super().predict_action_chunk_batch(observations)
            return actions[:, :2] if observations[0][TASK] == "short" else actions * np.nan

    with _serve(Broken()) as server, Client(server.url) as client:
        with pytest.raises(ServerError, match="actions of shape \\(2, 4\\), expected \\(5, 4\\)"):
            client.infer(_obs(prompt="short"))
        with pytest.raises(ServerError, match="non-finite actions"):
            client.infer(_obs())


def test_serving_leaves_the_process_random_streams_alone():
    torch.manual_seed(5)
    np.random.seed(5)
    want = torch.rand(3), np.random.rand(3)
    with _serve(FakePolicy()) as server, Client(server.url) as client:
        torch.manual_seed(5)
        np.random.seed(5)
        client.reseed(123)
        client.infer(_obs())
        np.testing.assert_array_equal(torch.rand(3), want[0])
        np.testing.assert_array_equal(np.random.rand(3), want[1])


def test_connection_limit_and_unknown_paths():
    with _serve(FakePolicy(), max_connections=1) as server, Client(server.url):
        with pytest.raises(ConnectionError, match="503"):
            Client(server.url, retry=FAST_FAIL)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/other", timeout=5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_client_retries_until_the_server_is_up_and_gives_up_in_bounded_time():
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="3 attempts"):
        Client(f"ws://127.0.0.1:{port}", retry=FAST_FAIL)
    assert time.monotonic() - started < 5

    policy = FakePolicy()
    server = ServerThread(policy, policy.serving_spec(), ServerConfig(port=port))
    timer = threading.Timer(0.3, server.start)
    timer.start()
    try:
        with Client(f"127.0.0.1:{port}", retry=RetryConfig(max_attempts=50, timeout_s=20)) as client:
            assert client.infer(_obs())["actions"].shape == (5, 4)
    finally:
        timer.join()
        server.stop()


def test_action_chunk_broker_executes_chunks_step_by_step():
    with _serve(FakePolicy()) as server, RemotePolicy(server.url) as remote:
        broker = ActionChunkBroker(remote, n_action_steps=3)
        broker.reset()
        first_chunk = Client(server.url).infer(_obs())[
            "actions"
        ]  # a fresh connection: same state as remote's
        actions = [broker.select_action(_obs()) for _ in range(3)]
        np.testing.assert_array_equal(np.stack(actions), first_chunk[:3])
        assert broker.steps_left == 0
        broker.select_action(_obs())
        assert broker.steps_left == 2
        broker.reset()
        assert broker.steps_left == 0
