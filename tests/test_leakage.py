"""The leakage rule (docs/architecture.md), each check with a negative control showing it can fail.

1. The student's outputs are a function of the current observation, state and instruction only: changing the
   future frames leaves them bit-identical.
2. The target encodes each frame on its own and the predictor is block-causal: changing frames after ``t``
leaves
   the latents of frames ``<= t`` and the predictions made at steps ``<= t`` bit-identical.
3. Multi-view joins keep samples apart: changing one sample's second view leaves every other sample unchanged.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers.models import random_batch, single_thread, tiny_config
from vlajepa.constants import future_image_key, image_key
from vlajepa.nn import predictor as predictor_module
from vlajepa.nn.predictor import block_causal_mask
from vlajepa.policies.vla_jepa import VLAJEPAPolicy
from vlajepa.policies.vla_jepa import student as student_module
from vlajepa.policies.vla_jepa.student import StudentOutput

CAMERA = "corner2"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def build(**changes) -> VLAJEPAPolicy:
    torch.manual_seed(0)
    model = VLAJEPAPolicy(tiny_config(**changes)).eval()
    with torch.no_grad():  # leave the zero-initialised branches of a fresh model: every input must matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def student_outputs(model: VLAJEPAPolicy, batch: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model.encode(batch)
        noise = torch.randn(
            len(batch["task"]),
            model.config.chunk_size,
            model.config.action_dim,
            generator=torch.Generator().manual_seed(0),
        )
        actions = model.predict_action(batch, noise=noise)
    return {"latent": out.latent_action_tokens, "embodied": out.embodied_tokens, "actions": actions}


def with_new_future(batch: dict, first_changed: int, cameras=(CAMERA,)) -> dict:
    changed = dict(batch)
    for camera in cameras:
        clip = batch[future_image_key(camera)].clone()
        clip[:, first_changed:] = torch.rand_like(clip[:, first_changed:])
        changed[future_image_key(camera)] = clip
    return changed


# ---------------------------------------------------------------------------- 1. student


@pytest.mark.parametrize("use_world_model", [True, False], ids=["vla-jepa", "bc"])
def test_student_outputs_ignore_future_frames(use_world_model):
    model = build(use_world_model=use_world_model)
    batch = random_batch(model.config, batch_size=3)
    reference = student_outputs(model, batch)
    changed = student_outputs(model, with_new_future(batch, first_changed=1))
    for name in reference:
        assert torch.equal(reference[name], changed[name]), name


class FutureSeeingVLAJEPA(VLAJEPAPolicy):
    """Negative control: a student that (wrongly) looks at the last future frame, as a leaky design would."""

    def encode(self, batch: dict) -> StudentOutput:
        leaky = dict(batch, **{image_key(CAMERA): batch[future_image_key(CAMERA)][:, -1]})
        return super().encode(leaky)


def test_negative_control_a_future_seeing_student_is_caught():
    torch.manual_seed(0)
    model = FutureSeeingVLAJEPA(tiny_config()).eval()
    batch = random_batch(model.config, batch_size=3)
    reference = student_outputs(model, batch)
    changed = student_outputs(model, with_new_future(batch, first_changed=1))
    assert not torch.equal(reference["latent"], changed["latent"])
    assert not torch.equal(reference["embodied"], changed["embodied"])


# ---------------------------------------------------------------------------- 2. target and predictor


def context_and_predictions(model: VLAJEPAPolicy, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        latents = model.target([batch[future_image_key(CAMERA)]])  # (b, T, n, d)
        predicted = model.predictor(latents[:, :-1], model.encode(batch).latent_action_tokens)
    return latents, predicted


def residual_predictor(residual: bool) -> dict:
    """``build`` changes for an absolute or a residual (``z_t`` + change) predictor."""
    return {"clip_length": 4, "predictor": dataclasses.replace(tiny_config().predictor, residual=residual)}


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("t", [0, 1, 2])
def test_latents_and_predictions_up_to_t_ignore_frames_after_t(t, residual):
    model = build(**residual_predictor(residual))
    batch = random_batch(model.config, batch_size=2)
    latents, predicted = context_and_predictions(model, batch)
    changed_latents, changed_predicted = context_and_predictions(
        model, with_new_future(batch, first_changed=t + 1)
    )
    assert torch.equal(latents[:, : t + 1], changed_latents[:, : t + 1])  # context of frames <= t
    assert torch.equal(predicted[:, : t + 1], changed_predicted[:, : t + 1])  # predictions made at steps <= t
    assert not torch.equal(latents[:, t + 1], changed_latents[:, t + 1])  # the change is real
    if t + 1 < predicted.shape[1]:
        assert not torch.equal(predicted[:, t + 1], changed_predicted[:, t + 1])


def test_block_causal_mask_forbids_later_blocks():
    mask = block_causal_mask(num_blocks=3, block_size=2)
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("residual", [False, True])
def test_predictor_gradients_flow_only_from_earlier_blocks(residual):
    model = build(**residual_predictor(residual))
    predictor = model.predictor
    latents = torch.randn(1, 3, predictor.tokens_per_frame, model.target.dim, requires_grad=True)
    conditions = torch.randn(
        1, 3, predictor.conditions_per_step, model.config.student.dim, requires_grad=True
    )
    predictor(latents, conditions)[:, 1].sum().backward()  # the prediction made at step 1
    assert latents.grad[:, 2].abs().sum() == 0 and conditions.grad[:, 2].abs().sum() == 0
    assert latents.grad[:, :2].abs().sum() > 0 and conditions.grad[:, :2].abs().sum() > 0


def test_negative_control_joint_clip_encoding_and_full_attention_are_caught(monkeypatch):
    model = build(clip_length=4)
    batch = random_batch(model.config, batch_size=2)
    changed = with_new_future(batch, first_changed=2)

    # A predictor without the block mask lets step 0 read frame 2.
    monkeypatch.setattr(
        predictor_module,
        "block_causal_mask",
        lambda n, size, device=None: torch.ones(n * size, n * size, dtype=torch.bool),
    )
    _, predicted = context_and_predictions(model, batch)
    _, changed_predicted = context_and_predictions(model, changed)
    assert not torch.equal(predicted[:, 0], changed_predicted[:, 0])
    monkeypatch.undo()

    # A target that encodes the clip jointly (each frame sees the clip mean) leaks into frame 0's latent.
    encode_frames = model.target.forward

    def joint(clips):
        mean = torch.stack(list(clips), dim=2).mean(dim=1, keepdim=True)  # (b, 1, v, 3, h, w)
        return encode_frames([c + 0.5 * mean[:, :, i] for i, c in enumerate(clips)])

    monkeypatch.setattr(model.target, "forward", joint)
    latents, _ = context_and_predictions(model, batch)
    changed_latents, _ = context_and_predictions(model, changed)
    assert not torch.equal(latents[:, 0], changed_latents[:, 0])


# ---------------------------------------------------------------------------- 3. multi-view


def multi_view_outputs(model: VLAJEPAPolicy, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    with torch.no_grad():
        clips = [batch[future_image_key(c)] for c in model.config.cameras]
        return student_outputs(model, batch), model.target(clips)


def test_multi_view_join_keeps_samples_apart():
    model = build(cameras=("corner2", "corner3"))
    batch = random_batch(model.config, batch_size=3)
    reference, reference_latents = multi_view_outputs(model, batch)
    changed = dict(batch)
    for key in (image_key("corner3"), future_image_key("corner3")):
        changed[key] = batch[key].clone()
        changed[key][1] = torch.rand_like(changed[key][1])  # sample 1, second view only
    outputs, latents = multi_view_outputs(model, changed)
    for name in reference:
        assert torch.equal(reference[name][0], outputs[name][0]), name
        assert torch.equal(reference[name][2], outputs[name][2]), name
        assert not torch.equal(reference[name][1], outputs[name][1]), name
    assert torch.equal(reference_latents[[0, 2]], latents[[0, 2]])
    assert not torch.equal(reference_latents[1], latents[1])


def test_negative_control_a_chunk_cat_view_join_mixes_samples(monkeypatch):
    # The official code's mistake in spirit: regroup views with the batch and view axes swapped.
    monkeypatch.setattr(
        student_module,
        "join_views",
        lambda tokens, v: tokens.reshape(v, -1, *tokens.shape[1:]).transpose(0, 1),
    )
    model = build(cameras=("corner2", "corner3"))
    batch = random_batch(model.config, batch_size=3)
    reference, _ = multi_view_outputs(model, batch)
    changed = dict(batch, **{image_key("corner3"): batch[image_key("corner3")].clone()})
    changed[image_key("corner3")][1] = torch.rand_like(changed[image_key("corner3")][1])
    outputs, _ = multi_view_outputs(model, changed)
    assert not torch.equal(reference["embodied"][0], outputs["embodied"][0])
