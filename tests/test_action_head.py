"""The flow-matching action head's two block layouts: training, sampling with cached conditioning, parameter
counts (the paper preset against the official head), checkpoints and configs saved before the layout existed."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from helpers.models import random_batch, single_thread, tiny_config
from vlajepa.checkpoint import CONFIG_FILE
from vlajepa.nn.action_head import AlternatingDiTBlock, DiTBlock, FlowMatchingActionHead
from vlajepa.nn.config import ActionHeadConfig
from vlajepa.policies import load_policy, load_policy_config
from vlajepa.policies.vla_jepa import VLAJEPAPolicy

LAYOUTS = ("self_cross", "alternating")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def head_config(layout: str, **changes) -> ActionHeadConfig:
    """The tiny preset's head with two blocks (one cross- and one self-attending block when alternating)."""
    return dataclasses.replace(tiny_config().action_head, layout=layout, depth=2, **changes)


def policy(layout: str, seed: int = 0) -> VLAJEPAPolicy:
    torch.manual_seed(seed)
    return VLAJEPAPolicy(tiny_config(action_head=head_config(layout)))


def head(layout: str, dim: int = 32, depth: int = 2, context_dim: int = 48) -> FlowMatchingActionHead:
    config = ActionHeadConfig(dim=dim, depth=depth, heads=2, mlp_ratio=2.0, layout=layout)
    return FlowMatchingActionHead(config, action_dim=3, chunk_size=4, state_dim=5, context_dim=context_dim)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_trains_a_step_and_samples(layout):
    model = policy(layout)
    batch = random_batch(model.config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    gates = [block.modulation[-1].weight.clone() for block in model.action_head.blocks]
    for _ in range(3):  # the zero-initialised output opens first, then the zero-initialised gates
        loss, logs = model(batch)
        assert torch.isfinite(loss) and logs["loss/action"] > 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    blocks = model.action_head.blocks
    assert all(not torch.equal(b.modulation[-1].weight, g) for b, g in zip(blocks, gates, strict=True))
    actions = model.predict_action(batch, generator=torch.Generator().manual_seed(0))
    assert actions.shape == (2, model.config.chunk_size, model.config.action_dim) and torch.isfinite(actions).all()


def test_the_alternating_layout_cross_attends_on_even_blocks_and_self_attends_on_odd_ones():
    blocks = head("alternating", depth=5).blocks
    assert all(isinstance(b, AlternatingDiTBlock) for b in blocks)
    assert [b.cross_attends for b in blocks] == [True, False, True, False, True]
    assert all(isinstance(b, DiTBlock) for b in head("self_cross", depth=3).blocks)
    with pytest.raises(ValueError, match="cross-attending block needs"):
        blocks[0](torch.zeros(1, 4, 32), None, torch.zeros(1, 1, 96))


@pytest.mark.parametrize(("dim", "depth", "context_dim"), [(32, 2, 48), (64, 3, 64), (48, 4, 16)])
def test_block_parameter_counts_follow_the_layout(dim, depth, context_dim):
    ratio, linear = 2.0, lambda i, o: i * o + o  # noqa: E731 - a weight matrix and its bias
    mlp = linear(dim, int(dim * ratio)) + linear(int(dim * ratio), dim)
    self_attention = 4 * linear(dim, dim)
    cross_attention = 2 * linear(dim, dim) + linear(context_dim, 2 * dim)
    per_block = {
        "self_cross": self_attention + cross_attention + 2 * dim + mlp + linear(dim, 6 * dim),  # 2d: cross-attn norm
        "alternating": mlp + linear(dim, 3 * dim),
    }
    crossing = (depth + 1) // 2  # blocks 0, 2, 4, ... cross-attend
    attention = crossing * cross_attention + (depth - crossing) * self_attention
    self_cross, alternating = head("self_cross", dim, depth, context_dim), head("alternating", dim, depth, context_dim)
    assert n_params(self_cross.blocks) == depth * per_block["self_cross"]
    assert n_params(alternating.blocks) == depth * per_block["alternating"] + attention
    # the layouts share everything outside the blocks
    assert n_params(self_cross) - n_params(self_cross.blocks) == n_params(alternating) - n_params(alternating.blocks)
    assert n_params(alternating) < n_params(self_cross)


def official_vla_jepa_head_parameters(
    width: int = 768, layers: int = 16, vlm_width: int = 2048, state_dim: int = 8, action_dim: int = 7
) -> int:
    """Parameters of the official VLA-JEPA action head as its published training config builds it
    (scripts/config/vlajepa_robot_ft.yaml: action_model_type DiT-B = 12 heads x 64, num_layers 16,
    interleave_self_attention, norm_type ada_norm, cross_attention_dim = the VLM's width 2048, output_dim and
    hidden_size 1024, 32 future tokens, a 1024-entry position table; the model is starVLA's GR00T-N1.5
    FlowmatchingActionHead around a diffusers-based DiT), counted from the layer shapes."""
    linear = lambda i, o: i * o + o  # noqa: E731
    ada_norm, mlp = linear(width, 2 * width), linear(width, 4 * width) + linear(4 * width, width)
    cross = 2 * linear(width, width) + 2 * linear(vlm_width, width)  # to_q, to_out; to_k, to_v from the VLM width
    self_attention = 4 * linear(width, width)
    blocks = sum(ada_norm + mlp + (cross if i % 2 == 0 else self_attention) for i in range(layers))
    dit = blocks + linear(256, width) + linear(width, width) + linear(width, 2 * width) + linear(width, 1024)
    state_encoder = linear(state_dim, 1024) + linear(1024, width)
    action_encoder = linear(action_dim, width) + linear(2 * width, width) + linear(width, width)
    action_decoder = linear(1024, 1024) + linear(1024, action_dim)
    return dit + state_encoder + action_encoder + action_decoder + 32 * width + 1024 * width


def test_the_paper_preset_head_is_within_5_percent_of_the_official_head():
    from vlajepa.policies.sizes import parameter_counts
    from vlajepa.policies.vla_jepa import VLAJEPAConfig
    from vlajepa.presets import preset_path

    config = VLAJEPAConfig.from_yaml(preset_path("paper"))
    reference = official_vla_jepa_head_parameters()
    assert reference == 155_182_343  # the number docs/training.md compares to
    assert config.action_head.layout == "alternating" and config.action_head.depth == 16
    ours = parameter_counts(config)["action_head"]
    assert abs(ours / reference - 1) < 0.05
    self_cross = dataclasses.replace(config, action_head=dataclasses.replace(config.action_head, layout="self_cross"))
    assert parameter_counts(self_cross)["action_head"] / reference - 1 > 0.5  # what the preset used before


def test_every_alternating_block_starts_as_the_identity():
    model = head("alternating", depth=3)  # (self_cross blocks' cross-attention is ungated: they start as it alone)
    x, context = torch.randn(2, 5, 32), torch.randn(2, 6, 48)
    modulations, _ = model.time_conditioning(torch.rand(2))
    keys_values = model.context_keys_values(context)
    for block, block_keys_values, modulation in zip(model.blocks, keys_values, modulations, strict=True):
        assert torch.equal(block(x, block_keys_values, modulation), x)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_cached_sampler_equals_plain_euler_steps(layout):
    torch.manual_seed(0)
    model = head(layout, depth=3)
    for parameter in model.parameters():  # open the zero-initialised gates and output
        torch.nn.init.normal_(parameter, std=0.1)
    context, state, noise = torch.randn(2, 6, 48), torch.randn(2, 5), torch.randn(2, 4, 3)
    x = noise
    for i in range(3):
        time = torch.full((2,), 1.0 - i / 3)
        x = x - model.velocity(x, time, context, state) / 3  # everything recomputed every step
    assert torch.allclose(model.sample(context, state, num_steps=3, noise=noise), x, atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_padded_steps_have_no_effect_on_the_loss(layout):
    torch.manual_seed(0)
    model = head(layout, depth=3)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    actions, context, state = torch.randn(2, 4, 3), torch.randn(2, 6, 48), torch.randn(2, 5)
    pad = torch.tensor([[False, False, True, True], [False, False, False, True]])
    noise, time = torch.randn(2, 4, 3), torch.rand(2)
    loss = model.loss(actions, context, state, pad, noise=noise, time=time)
    changed = actions.clone()
    changed[pad] = 99.0
    assert torch.equal(model.loss(changed, context, state, pad, noise=noise, time=time), loss)
    changed[0, 1] += 1.0  # a real step does count
    assert not torch.equal(model.loss(changed, context, state, pad, noise=noise, time=time), loss)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_saved_policy_of_each_layout_loads_and_acts_the_same(layout, tmp_path):
    model = policy(layout)
    for parameter in model.action_head.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["action_head"]["layout"] == layout
    loaded = load_policy(tmp_path)
    assert loaded.config == model.config
    batch = random_batch(model.config)
    noise = torch.randn(2, model.config.chunk_size, model.config.action_dim)
    model.eval()
    assert torch.equal(loaded.predict_action(batch, noise=noise), model.predict_action(batch, noise=noise))


def test_a_config_saved_before_the_layout_existed_loads_as_self_cross(tmp_path):
    VLAJEPAPolicy(tiny_config()).save_pretrained(tmp_path)
    data = json.loads((tmp_path / CONFIG_FILE).read_text())
    del data["action_head"]["layout"]
    data["config_version"] = 4  # the last version without the field
    (tmp_path / CONFIG_FILE).write_text(json.dumps(data))
    assert load_policy_config(tmp_path).action_head.layout == "self_cross"

