"""Serving a real (tiny, randomly initialized) VLAJEPAPolicy checkpoint: spec, remote = in-process, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.synthetic import save_random_checkpoint
from vlajepa.checkpoint import CheckpointError
from vlajepa.constants import OBS_STATE, TASK
from vlajepa.policies.vla_jepa import VLAJEPAConfig, VLAJEPAPolicy
from vlajepa.presets import preset_path
from vlajepa.serve import Client, RemotePolicy, ServerConfig, ServerThread, load_served_policy

KEY = "observation.images.corner2"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny") / "checkpoint"
    return save_random_checkpoint(directory, VLAJEPAConfig.from_yaml(preset_path("tiny")))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # A tiny model gains nothing from intra-op threads, and on 2 busy cores they cost 10x in spinning.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _obs(seed: int, size: int = 96) -> dict:
    rng = np.random.default_rng(seed)
    return {
        KEY: rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        OBS_STATE: rng.normal(size=4).astype(np.float32),
        TASK: "push the puck to the goal",
    }


def _seed_like_the_harness(policy, seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
    policy.reseed(seed)


def test_spec_comes_from_the_checkpoint_config(checkpoint):
    loaded = load_served_policy(checkpoint)
    spec = loaded.spec
    assert (spec.action_dim, spec.chunk_length, spec.state_dim) == (4, 4, 4)
    assert spec.image_keys == (KEY,) and spec.images[0].shape == (32, 32, 3) and spec.images[0].any_size
    assert spec.model["name"] == "VLAJEPAPolicy" and spec.model["parameters"] > 0
    assert spec.model["config"]["image_size"] == 32 and spec.model["checkpoint"] == str(checkpoint)
    with pytest.raises(CheckpointError, match="missing: checkpoint directory does not exist"):
        load_served_policy(checkpoint.parent / "missing")


def test_seeded_episodes_through_the_server_equal_in_process(checkpoint):
    """The remote-evaluation contract: same seeds, same calls, bit-identical action chunks."""
    observations = [_obs(i) for i in range(2)]
    seeds = (7, 8, 7)
    reference = VLAJEPAPolicy.from_pretrained(checkpoint)
    expected = []
    for seed in seeds:
        _seed_like_the_harness(reference, seed)
        reference.reset()
        expected.append([reference.predict_action_chunk(o) for o in observations])

    loaded = load_served_policy(checkpoint)
    with ServerThread(loaded.policy, loaded.spec) as server, RemotePolicy(server.url) as remote:
        assert remote.spec == loaded.spec
        for seed, want in zip(seeds, expected, strict=True):
            _seed_like_the_harness(remote, seed)
            remote.reset()
            for obs, chunk in zip(observations, want, strict=True):
                got = remote.predict_action_chunk(obs)
                assert got.shape == (4, 4) and got.dtype == np.float32
                np.testing.assert_array_equal(got, chunk)
    np.testing.assert_array_equal(expected[0][0], expected[2][0])  # reseeding replays an episode
    assert not np.array_equal(expected[0][0], expected[1][0])  # and different seeds differ


@pytest.mark.parametrize("max_batch", [1, 8])
def test_eight_clients_at_once_on_the_real_model(checkpoint, max_batch):
    loaded = load_served_policy(checkpoint)
    config = ServerConfig(port=0, max_batch=max_batch, batch_wait_s=0.02)

    def run(i: int, url: str) -> list[dict]:
        with Client(url) as client:
            obs = _obs(i, size=32 + 16 * (i % 2))  # mixed sizes: the policy resizes them all
            obs["prompt"] = obs.pop(TASK)  # as openpi clients send it
            return [client.infer(obs) for _ in range(3)]

    with ServerThread(loaded.policy, loaded.spec, config) as server, ThreadPoolExecutor(8) as pool:
        replies = [r for rs in pool.map(run, range(8), [server.url] * 8) for r in rs]
    assert all(r["actions"].shape == (4, 4) and np.isfinite(r["actions"]).all() for r in replies)
    batch_sizes = [r["server_timing"]["batch_size"] for r in replies]
    assert max(batch_sizes) > 1 if max_batch > 1 else set(batch_sizes) == {1}


def test_concurrent_connections_keep_their_own_noise(checkpoint):
    """Interleaved clients each get the actions they would get alone (per-connection generator state)."""
    reference = VLAJEPAPolicy.from_pretrained(checkpoint)
    expected = {}
    for i in range(4):
        _seed_like_the_harness(reference, i)
        expected[i] = [reference.predict_action_chunk(_obs(10 * i + j)) for j in range(3)]

    def run(i: int, url: str) -> list[np.ndarray]:
        with RemotePolicy(url) as remote:
            remote.reseed(i)
            return [remote.predict_action_chunk(_obs(10 * i + j)) for j in range(3)]

    loaded = load_served_policy(checkpoint)
    with ServerThread(loaded.policy, loaded.spec) as server, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(4), [server.url] * 4))
    for i, chunks in enumerate(results):
        for got, want in zip(chunks, expected[i], strict=True):
            np.testing.assert_array_equal(got, want)


_CLI = (
    "import argparse, sys\n"
    "from vlajepa.commands import serve\n"
    "parser = argparse.ArgumentParser(prog='vlajepa')\n"
    "serve.register(parser.add_subparsers())\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.func(args))\n"
)


@pytest.mark.slow
def test_cli_serves_a_checkpoint_until_terminated(checkpoint):
    command = [sys.executable, "-c", _CLI, "serve", "--checkpoint", str(checkpoint), "--port", "0"]
    command += ["--threads", "1"]
    env = {**os.environ, "NO_PROXY": "*"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()  # blocks until the server listens (or the process dies)
        assert line.startswith("serving VLAJEPAPolicy on ws://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[3]
        port = int(url.rsplit(":", 1)[1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        with Client(url) as client:
            assert client.metadata["action_shape"] == [4, 4]
            assert client.infer(_obs(0))["actions"].shape == (4, 4)
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
