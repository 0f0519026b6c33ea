"""Vision stems: same token grid for all three; only ``cnn`` mixes pixels across patch borders."""

import pytest
import torch

from vlajepa.nn.config import VisionConfig
from vlajepa.nn.vision import VisionEncoder
from vlajepa.train.encoder_pretrain import EncoderPretrainConfig, MaskedLatentModel


def _stem_tokens(stem: str, images: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    encoder = VisionEncoder(VisionConfig(patch_size=12, dim=32, depth=1, heads=2, stem=stem), image_size=48)
    with torch.no_grad():
        return encoder.patch_embed(images * 2.0 - 1.0)  # (b, d, 4, 4): one column per patch


@pytest.mark.parametrize("stem", ["patch", "conv", "cnn"])
def test_every_stem_gives_one_token_per_patch(stem):
    encoder = VisionEncoder(VisionConfig(patch_size=12, dim=32, depth=1, heads=2, stem=stem), image_size=48)
    assert encoder(torch.rand(3, 3, 48, 48)).shape == (3, 16, 32)


def test_only_the_cnn_stem_sees_across_patch_borders():
    images = torch.rand(1, 3, 48, 48)
    changed = images.clone()
    changed[..., 12, 12] = 1.0 - changed[..., 12, 12]  # first pixel of the patch at grid (1, 1)
    for stem, leaks in (("patch", False), ("conv", False), ("cnn", True)):
        delta = (_stem_tokens(stem, changed) - _stem_tokens(stem, images)).abs().amax(dim=1)[0]  # (4, 4)
        assert delta[1, 1] > 0, stem  # the patch that holds the pixel always changes
        assert bool(delta[0, 0] > 0) is leaks, stem  # its upper-left neighbour changes only with overlap


def test_masked_pretraining_refuses_the_cnn_stem():
    config = EncoderPretrainConfig(image_size=48, vision=VisionConfig(patch_size=12, dim=32, depth=1, stem="cnn"))
    with pytest.raises(ValueError, match="cnn"):
        MaskedLatentModel(config)
