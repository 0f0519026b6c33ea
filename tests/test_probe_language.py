"""The language probe compares chunks of one observation under many instructions from one shared noise draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import probe_language
from helpers.models import single_thread, tiny_config
from vlajepa.constants import ACTION, OBS_STATE, TASK, image_key
from vlajepa.envs.language import TaskLanguage
from vlajepa.normalize import Normalizer
from vlajepa.policies.vla_jepa import VLAJEPAPolicy


@pytest.fixture(scope="module")
def policy() -> VLAJEPAPolicy:
    torch.manual_seed(0)
    stats = {ACTION: {"min": [-1.0] * 4, "max": [1.0] * 4}, OBS_STATE: {"min": [-1.0] * 4, "max": [1.0] * 4}}
    policy = VLAJEPAPolicy(tiny_config(), Normalizer.from_stats(stats, {ACTION: "min_max", OBS_STATE: "min_max"}))
    with torch.no_grad():  # move the zero-initialised output layers so the instruction changes the actions
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return policy.eval()


def observation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        image_key("corner2"): rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8),
        OBS_STATE: rng.uniform(-1, 1, size=4).astype(np.float32),
        TASK: "ignored: the probe sets the instructions",
    }


def test_chunks_share_the_noise_so_only_the_instruction_differs(policy) -> None:
    noise = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(0))
    with single_thread():
        out = probe_language.chunks(policy, observation(0), ["open the drawer", "open the drawer", "press it"], noise)
        batch = policy.processor.preprocess([{**observation(0), TASK: "press it"}])
        alone = policy.predict_action(batch, noise=noise).double().numpy()
    assert out.shape == (3, 4, 4)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_allclose(out[2], alone[0], atol=1e-6)  # batching instructions changes nothing
    assert np.abs(out[0] - out[2]).max() > 1e-4  # the instruction does move the chunk


def test_a_paraphrase_equal_to_the_training_instruction_has_no_drift(policy, monkeypatch) -> None:
    language = {
        "task-a": TaskLanguage("open the drawer", ("open the drawer",), ("open the drawer",)),
        "task-b": TaskLanguage("press the button", ("press the button",), ("press the button", "open the drawer")),
    }
    monkeypatch.setattr(probe_language, "LANGUAGE", language)
    frames = {task: [observation(1), observation(2)] for task in language}
    with single_thread():
        a, b = probe_language.probe(policy, frames, seed=0)
    assert (a.accuracy, a.drift, a.confused_with) == (1.0, 0.0, {})
    assert a.sensitivity > 0
    # task-b's second "paraphrase" is task-a's instruction: nearest to task-a every time
    assert b.accuracy == 0.5 and b.confused_with == {"task-a": 2}
    summary = probe_language.summary([a, b])
    assert summary["chunks"] == 6 and summary["accuracy"] == pytest.approx(4 / 6)
