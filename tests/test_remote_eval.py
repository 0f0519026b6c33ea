"""Evaluating through the policy server gives the same results as evaluating the policy in-process."""

import dataclasses

import pytest

from benchmarks.synthetic import save_random_checkpoint
from helpers.models import tiny_config
from vlajepa.eval.policies import PolicySource
from vlajepa.eval.runner import EvalConfig, evaluate
from vlajepa.serve import ServerThread, load_served_policy

pytestmark = pytest.mark.slow


def test_remote_evaluation_equals_in_process(tmp_path):
    checkpoint = tmp_path / "ckpt"
    config = tiny_config()
    save_random_checkpoint(checkpoint, config)
    eval_config = EvalConfig(
        tasks=("reach-v3", "push-v3"),
        episodes=2,
        camera=config.cameras[0],
        max_steps=25,
        workers=1,
        seed=4242,
    )
    local, _ = evaluate(PolicySource("checkpoint", {"path": str(checkpoint)}), eval_config, progress=False)

    loaded = load_served_policy(checkpoint)
    with ServerThread(loaded.policy, loaded.spec) as server:
        remote, _ = evaluate(PolicySource("remote", {"url": server.url}), eval_config, progress=False)

    assert len(local) == len(remote) == 4
    # Summed dense reward fingerprints every executed action: equal only if every action chunk was equal.
    assert [dataclasses.astuple(e) for e in local] == [dataclasses.astuple(e) for e in remote]
    assert len({e.total_reward for e in local}) > 1, "episodes should differ from each other"


def test_remote_evaluation_renders_the_served_policys_cameras(tmp_path):
    """`vlajepa eval --policy remote:URL` asks the server which cameras its policy reads and renders those."""
    from vlajepa.commands.evaluate import rendering_for

    checkpoint = tmp_path / "ckpt"
    save_random_checkpoint(checkpoint, tiny_config(cameras=("corner2", "corner")))
    loaded = load_served_policy(checkpoint)
    with ServerThread(loaded.policy, loaded.spec) as server:
        source = PolicySource("remote", {"url": server.url})
        camera, image_size = rendering_for(source, None, None)
        assert (camera, image_size) == (("corner2", "corner"), 96)
        with pytest.raises(ValueError, match="reads the cameras corner2,corner"):
            rendering_for(source, "corner2", None)
        config = EvalConfig(tasks=("reach-v3",), episodes=1, camera=camera, max_steps=5, workers=1)
        (episode,), _ = evaluate(source, config, progress=False)
    assert episode.length == 5
