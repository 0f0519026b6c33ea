"""Interoperability: openpi's own PyPI client (``openpi-client``) talks to our server unchanged, with an API key.

openpi-client pins numpy<2, so it runs from its own cached virtual environment, built on first use by
``scripts/openpi_client_venv.sh`` (PyPI access needed once). The client script below runs in that venv against
a server started here that requires an API key: without ``api_key=`` the client is refused, with it its actions
must equal those of the same checkpoint in-process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.synthetic import save_random_checkpoint
from vlajepa.constants import OBS_STATE, TASK
from vlajepa.policies.vla_jepa import VLAJEPAConfig, VLAJEPAPolicy
from vlajepa.presets import preset_path
from vlajepa.serve import ApiKeys, ServerConfig, ServerThread, load_served_policy

ROOT = Path(__file__).resolve().parents[1]
KEY = "observation.images.corner2"
API_KEY = "openpi-client-test-key-0123456789"

# Runs inside the openpi-client venv (numpy 1.x); writes what it sent and received to an .npz file.
CLIENT_SCRIPT = """
import json, os, sys
import numpy as np
from openpi_client import action_chunk_broker, websocket_client_policy

host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    websocket_client_policy.WebsocketClientPolicy(host=host, port=port)  # no key: refused at the handshake
    refused = ""
except Exception as err:
    refused = f"{type(err).__name__}: {err}"
policy = websocket_client_policy.WebsocketClientPolicy(host=host, port=port, api_key=os.environ["TEST_API_KEY"])
metadata = policy.get_server_metadata()
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
states = rng.normal(size=(4, 4)).astype(np.float32)
prompt = "push the puck to the goal"
actions = []
for image, state in zip(images[:2], states[:2]):
    reply = policy.infer({"observation/image": image, "observation/state": state, "prompt": prompt})
    assert set(reply["server_timing"]) >= {"infer_ms", "queue_ms"}, reply
    actions.append(reply["actions"])
try:
    policy.infer({"observation/image": images[0], "observation/state": states[0]})
    error = ""
except RuntimeError as err:
    error = str(err)
broker = action_chunk_broker.ActionChunkBroker(policy, action_horizon=metadata["action_horizon"])
steps = [broker.infer({"observation/image": images[2 + i // 4], "observation/state": states[2 + i // 4],
                       "prompt": prompt})["actions"] for i in range(8)]
np.savez(out, images=images, states=states, actions=np.stack(actions), broker=np.stack(steps),
         error=np.array(error), refused=np.array(refused), metadata=np.array(json.dumps(metadata)),
         numpy=np.array(np.__version__))
"""


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def openpi_python() -> str:
    """Python of the cached openpi-client venv, creating it if needed."""
    venv = os.environ.get("VLAJEPA_OPENPI_VENV", str(ROOT / "data" / ".venvs" / "openpi-client"))
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "openpi_client_venv.sh"), venv],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if result.returncode != 0:
        if not _pypi_reachable():
            pytest.skip("cannot create the openpi-client venv: PyPI is unreachable (no network)")
        pytest.fail(f"creating the openpi-client venv failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_openpi_websocket_client_policy_gets_the_in_process_actions(openpi_python, tmp_path):
    config = VLAJEPAConfig.from_yaml(preset_path("tiny"))
    checkpoint = save_random_checkpoint(tmp_path / "checkpoint", config)
    script, out = tmp_path / "openpi_client_check.py", tmp_path / "openpi_result.npz"
    script.write_text(CLIENT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "PYTHONPATH"}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["TEST_API_KEY"] = API_KEY  # in the environment, not on the command line

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model; avoids spinning threads on 2 busy cores
    try:
        loaded = load_served_policy(checkpoint)
        config = ServerConfig(port=0, api_keys=ApiKeys([API_KEY]))
        with ServerThread(loaded.policy, loaded.spec, config) as server:
            result = subprocess.run(
                [openpi_python, str(script), "127.0.0.1", str(server.port), str(out)],
                capture_output=True, text=True, timeout=120, env=env,
            )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]

        sent = np.load(out)
        assert str(sent["numpy"]).startswith("1."), "the client must run on its own numpy<2"
        assert "InvalidStatus" in str(sent["refused"]) and "401" in str(sent["refused"]), str(sent["refused"])
        assert json.loads(str(sent["metadata"]))["action_shape"] == [4, 4]
        assert "invalid observation: missing keys ['task']" in str(sent["error"])

        # The same calls in-process, on a fresh copy of the checkpoint (a new connection starts from there).
        reference = VLAJEPAPolicy.from_pretrained(checkpoint)
        prompt = "push the puck to the goal"

        def predict(i: int) -> np.ndarray:
            obs = {KEY: sent["images"][i], OBS_STATE: sent["states"][i], TASK: prompt}
            return reference.predict_action_chunk(obs)

        for i in range(2):
            np.testing.assert_array_equal(sent["actions"][i], predict(i))
        broker_chunks = np.concatenate([predict(2), predict(3)])  # the broker asked once per 4 steps
        np.testing.assert_array_equal(sent["broker"], broker_chunks)
    finally:
        torch.set_num_threads(threads)
