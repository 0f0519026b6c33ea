"""Student-input augmentation and the convolutional patch stem."""

from __future__ import annotations

import torch

from vlajepa.constants import future_image_key, image_key
from vlajepa.nn.config import VisionConfig
from vlajepa.nn.vision import VisionEncoder, conv_stem, prime_factors
from vlajepa.train.augment import augment_batch, random_shift


def test_random_shift_moves_each_image_by_at_most_pad() -> None:
    torch.manual_seed(0)
    images = torch.rand(16, 3, 20, 20)
    shifted = random_shift(images, pad=2)
    assert shifted.shape == images.shape
    moved = 0
    for original, out in zip(images, shifted, strict=True):
        # The shifted image contains the original interior at one offset within [-pad, pad].
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[:, 2 + dy : 18 + dy, 2 + dx : 18 + dx], original[:, 2:-2, 2:-2])
        ]
        assert matches, "no offset within pad reproduces the image"
        moved += matches != [(0, 0)]
    assert moved > 0, "every image stayed in place"


def test_random_shift_zero_pad_is_identity() -> None:
    images = torch.rand(2, 3, 8, 8)
    assert random_shift(images, 0) is images


def test_augment_batch_leaves_future_frames_and_input_untouched() -> None:
    torch.manual_seed(1)
    current = torch.rand(4, 3, 16, 16)
    future = torch.rand(4, 3, 3, 16, 16)
    batch = {image_key("cam"): current, future_image_key("cam"): future, "task": ["a"] * 4}
    out = augment_batch(batch, ["cam"], pad=3)
    assert out[future_image_key("cam")] is future
    assert out["task"] is batch["task"]
    assert batch[image_key("cam")] is current  # the caller's batch is not modified
    assert not torch.equal(out[image_key("cam")], current)


def test_prime_factors() -> None:
    assert prime_factors(12) == [2, 2, 3]
    assert prime_factors(16) == [2, 2, 2, 2]
    assert prime_factors(7) == [7]


def test_conv_stem_sees_each_patch_alone() -> None:
    """Changing the pixels of one patch changes that patch's embedding only (no leak across patches)."""
    torch.manual_seed(0)
    stem = conv_stem(12, 32).eval()
    image = torch.rand(1, 3, 48, 48)
    edited = image.clone()
    edited[:, :, 12:24, 24:36] = torch.rand(1, 3, 12, 12)  # patch (row 1, col 2)
    with torch.no_grad():
        a, b = stem(image), stem(edited)
    assert a.shape == (1, 32, 4, 4)
    changed = (a - b).abs().amax(dim=1)[0] > 0  # (4, 4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1, 2] = True
    assert torch.equal(changed, expected)


def test_vision_encoder_with_conv_stem() -> None:
    encoder = VisionEncoder(VisionConfig(patch_size=8, dim=32, depth=1, heads=2, stem="conv"), image_size=32)
    tokens = encoder(torch.rand(2, 3, 32, 32))
    assert tokens.shape == (2, 16, 32)


def test_instruction_dropout_blanks_about_its_share_of_instructions_and_nothing_else():
    from vlajepa.constants import TASK
    from vlajepa.train.augment import drop_instructions

    batch = {TASK: [f"instruction {i}" for i in range(1000)], "other": torch.zeros(3)}
    assert drop_instructions(batch, 0.0) is batch
    out = drop_instructions(batch, 0.3, torch.Generator().manual_seed(0))
    dropped = sum(text == "" for text in out[TASK])
    assert 240 < dropped < 360 and out["other"] is batch["other"]
    assert all(text in ("", original) for text, original in zip(out[TASK], batch[TASK], strict=True))
    assert batch[TASK][0] == "instruction 0"  # the input batch is not modified


def test_instruction_dropout_is_a_checked_training_option_that_old_configs_load_without():
    import pytest

    from vlajepa.config import ConfigError
    from vlajepa.train.config import TrainConfig

    with pytest.raises(ConfigError, match="instruction_dropout"):
        TrainConfig(instruction_dropout=1.5)
    saved = TrainConfig().to_json()
    saved["config_version"] = 2
    del saved["instruction_dropout"]
    assert TrainConfig.from_json(saved) == TrainConfig()
