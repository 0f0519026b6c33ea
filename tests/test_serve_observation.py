"""Request validation: openpi and LeRobot spellings give one observation; bad requests name every problem."""

from __future__ import annotations

import numpy as np
import pytest

from vlajepa.constants import OBS_STATE, TASK
from vlajepa.serve.observation import InputLimits, ObservationError, parse_observation
from vlajepa.serve.spec import ImageSpec, PolicySpec

KEY = "observation.images.corner2"
SPEC = PolicySpec(action_dim=4, chunk_length=5, state_dim=4, images=(ImageSpec(KEY, 8, 8),))
RESIZING = PolicySpec(
    action_dim=4, chunk_length=5, state_dim=4, images=(ImageSpec(KEY, 8, 8, any_size=True),), n_action_steps=5
)
PROMPT = "open the door"


def _image(h=8, w=8):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _state():
    return np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)


def test_lerobot_keys_pass_through():
    obs = parse_observation({KEY: _image(), OBS_STATE: _state(), TASK: PROMPT, "extra": 1}, SPEC)
    assert set(obs) == {KEY, OBS_STATE, TASK}
    assert np.array_equal(obs[KEY], _image()) and obs[OBS_STATE].dtype == np.float32


@pytest.mark.parametrize(
    "request_",
    [
        {"observation/images/corner2": _image(), "observation/state": _state(), "prompt": PROMPT},
        {"observation": {"images": {"corner2": _image()}, "state": _state()}, "prompt": PROMPT},
        {"images": {"corner2": _image().transpose(2, 0, 1)}, "state": _state().astype("f8"), TASK: PROMPT},
        {"observation/image": _image(), "observation/state": list(map(float, _state())), "prompt": PROMPT},
    ],
    ids=["openpi-slashes", "nested", "aloha-chw-float64", "single-image-alias-list-state"],
)
def test_openpi_spellings(request_):
    obs = parse_observation(request_, SPEC)
    assert np.array_equal(obs[KEY], _image())
    np.testing.assert_allclose(obs[OBS_STATE], _state())
    assert obs[OBS_STATE].dtype == np.float32 and obs[TASK] == PROMPT


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({OBS_STATE: _state(), TASK: "x"}, "missing keys \\['observation.images.corner2'\\]"),
        ({KEY: _image(), TASK: "x"}, "missing keys \\['observation.state'\\]"),
        ({KEY: _image(), OBS_STATE: _state()}, "missing keys \\['task'\\]"),
        ({KEY: _image().astype(float), OBS_STATE: _state(), TASK: "x"}, "expected dtype uint8, got float"),
        ({KEY: _image(4, 4), OBS_STATE: _state(), TASK: "x"}, "expected shape \\(8, 8, 3\\)"),
        ({KEY: _image(64, 64), OBS_STATE: _state(), TASK: "x"}, "image too large"),
        ({KEY: _image()[..., 0], OBS_STATE: _state(), TASK: "x"}, "got \\(8, 8\\)"),
        ({KEY: "pixels", OBS_STATE: _state(), TASK: "x"}, "got str"),
        ({KEY: _image(), OBS_STATE: _state()[:3], TASK: "x"}, "expected shape \\(4,\\)"),
        ({KEY: _image(), OBS_STATE: np.arange(4), TASK: "x"}, "expected a float array, got dtype int64"),
        ({KEY: _image(), OBS_STATE: np.array([0, np.nan, 0, 0]), TASK: "x"}, "NaN or infinite"),
        ({KEY: _image(), OBS_STATE: np.array([0, np.inf, 0, 0]), TASK: "x"}, "NaN or infinite"),
        ({KEY: _image(), OBS_STATE: _state(), "prompt": 3}, "expected a string instruction, got int"),
        ({KEY: _image(), OBS_STATE: _state(), "prompt": b"bytes"}, "got bytes"),
        ({KEY: _image(), OBS_STATE: _state(), "prompt": "x" * 5000}, "over the limit"),
        ({KEY: _image(), OBS_STATE: _state(), "prompt": "a", TASK: "b"}, "both give 'task'"),
        ({KEY: _image(), OBS_STATE: _state(), TASK: "x", 5: 1}, "keys must be strings"),
        ([1, 2, 3], "must be a map, got list"),
    ],
)
def test_bad_requests_name_the_problem(request_, message):
    with pytest.raises(ObservationError, match=message):
        parse_observation(request_, SPEC)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ObservationError) as info:
        parse_observation({KEY: _image(3, 3), OBS_STATE: np.array([np.nan] * 4), "prompt": 1}, SPEC)
    assert all(part in str(info.value) for part in ("(8, 8, 3)", "NaN", "string instruction"))


def test_hostile_requests_get_short_replies():
    request = {f"k{i}": {"x": 1} for i in range(10_000)} | {i: 0 for i in range(1000)}
    with pytest.raises(ObservationError) as info:
        parse_observation(request, SPEC)
    assert len(str(info.value)) < 2_000


def test_resizing_policies_accept_any_size_up_to_the_limit():
    obs = parse_observation({KEY: _image(96, 64), OBS_STATE: _state(), TASK: "x"}, RESIZING)
    assert obs[KEY].shape == (96, 64, 3)
    with pytest.raises(ObservationError, match="image too large: 2000x8"):
        parse_observation({KEY: _image(2000, 8), OBS_STATE: _state(), TASK: "x"}, RESIZING)
    with pytest.raises(ObservationError, match="limit is 32"):
        obs = {KEY: _image(33, 8), OBS_STATE: _state(), TASK: "x"}
        parse_observation(obs, RESIZING, InputLimits(max_image_side=32))


def test_metadata_round_trips_the_spec():
    assert PolicySpec.from_metadata(RESIZING.metadata()) == RESIZING
