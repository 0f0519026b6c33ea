"""The student's optional observation tokens: spatial-softmax keypoints and the pooled instruction (sentence) token."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers.models import single_thread, tiny_config
from vlajepa.models.keypoints import KeypointTokens, spatial_softmax
from vlajepa.models.student import Student


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def test_spatial_softmax_finds_each_channels_peak():
    scores = torch.zeros(1, 2, 4, 8)
    scores[0, 0, 1, 6] = 50.0  # row 1 of 4, column 6 of 8
    coords = spatial_softmax(scores)
    # pixel centres: x = -1 + (2 * 6 + 1) / 8, y = -1 + (2 * 1 + 1) / 4
    torch.testing.assert_close(coords[0, 0], torch.tensor([0.625, -0.25]), atol=1e-4, rtol=0)
    torch.testing.assert_close(coords[0, 1], torch.zeros(2), atol=1e-6, rtol=0)  # flat scores: the centre
    # a lower temperature sharpens a weak peak towards its position
    weak = torch.zeros(1, 1, 4, 8)
    weak[0, 0, 3, 0] = 1.0
    soft, sharp = spatial_softmax(weak, 1.0)[0, 0], spatial_softmax(weak, 0.01)[0, 0]
    corner = torch.tensor([-0.875, 0.75])
    assert (sharp - corner).abs().max() < 1e-3 < (soft - corner).abs().max()


def test_keypoint_tokens_shapes_and_gradients():
    torch.manual_seed(0)
    module = KeypointTokens(num_keypoints=5, dim=16)
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    coords = module.coordinates(images)
    assert coords.shape == (3, 5, 2) and coords.abs().max() <= 1.0
    tokens = module(images)
    assert tokens.shape == (3, 5, 16)
    tokens.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert module.log_temperature.grad is not None
    with pytest.raises(ValueError, match="num_keypoints"):
        KeypointTokens(0, 16)


def test_student_reads_the_image_through_keypoints_when_patch_tokens_are_cut():
    config = tiny_config()
    config = dataclasses.replace(config, student=dataclasses.replace(config.student, keypoints=4))
    torch.manual_seed(0)
    student = Student(config).eval()
    with torch.no_grad():
        student.vision_proj.weight.zero_()  # the patch tokens no longer carry the image
        student.vision_proj.bias.zero_()
    images, other = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    state, task = torch.zeros(2, 4), ["open the drawer", "push the puck"]
    with torch.no_grad():
        first = student([images], state, task).embodied_tokens
        second = student([other], state, task).embodied_tokens
        student.keypoints = None  # without keypoint tokens the image cannot matter any more
        third = student([images], state, task).embodied_tokens
        fourth = student([other], state, task).embodied_tokens
    assert not torch.allclose(first, second)
    torch.testing.assert_close(third, fourth)


def test_sentence_token_is_the_normalized_mean_of_real_tokens_and_reaches_the_student():
    from vlajepa.models.student import sentence_embedding

    tokens = torch.tensor([[[2.0, 4.0], [4.0, 4.0], [100.0, -100.0]]])  # the last one is padding
    mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(sentence_embedding(tokens, mask), torch.tensor([[0.6, 0.8]]))  # mean (3, 4) -> unit

    config = tiny_config()
    config = dataclasses.replace(config, student=dataclasses.replace(config.student, sentence_token=True))
    torch.manual_seed(0)
    student = Student(config)
    out = student([torch.rand(2, 3, 32, 32)], torch.zeros(2, 4), ["open the drawer", "push the puck"])
    out.embodied_tokens.square().sum().backward()
    assert student.sentence_proj.weight.grad is not None and student.sentence_proj.weight.grad.abs().sum() > 0
    assert Student(tiny_config()).sentence_proj is None  # off by default
