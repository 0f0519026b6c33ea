"""The MT10 runner's summary: pooled in-distribution / perturbed success, difference to BC, per-run wall time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks import run_mt10
from vlajepa.eval.report import make_row


def row(method: str, target: str, task: str, setting: str, successes: int, episodes: int) -> dict:
    return make_row(method, task, setting, successes, episodes, target=target)


def test_summary_pools_settings_and_compares_to_bc() -> None:
    rows = [
        row("bc", "none", "reach-v3", "id", 8, 10),
        row("bc", "none", "push-v3", "id", 2, 10),
        row("bc", "none", "reach-v3", "camera", 1, 5),
        row("bc", "none", "reach-v3", "noise", 3, 5),
        row("vla-jepa-finetune", "ema", "reach-v3", "id", 10, 10),
        row("vla-jepa-finetune", "ema", "reach-v3", "camera", 4, 5),
        row("vla-jepa-finetune", "ema", "reach-v3", "noise", 4, 5),
    ]
    runs = {("bc", "none"): "bc", ("vla-jepa-finetune", "ema"): "finetune-ema"}
    times = {"train-bc": 100.0, "eval-bc": 50.0, "train-pretrain-ema": 30.0, "train-finetune-ema": 60.0,
             "eval-finetune-ema": 40.0, "train-cotrain-ema": 999.0}
    bc, finetune = run_mt10.summarize(rows, runs, times)
    assert (bc["id"]["successes"], bc["id"]["episodes"]) == (10, 20)
    assert (bc["perturbed"]["successes"], bc["perturbed"]["episodes"]) == (4, 10)
    assert bc["perturbed"]["per_setting"] == {"camera": 0.2, "noise": 0.6}
    assert bc["id"]["ci_low"] < 0.5 < bc["id"]["ci_high"]
    assert bc["wall_time_s"] == 150.0
    assert finetune["wall_time_s"] == 130.0  # pretraining counts, other runs' stages do not
    assert finetune["perturbed_minus_bc_points"] == pytest.approx(40.0)
    table = run_mt10.summary_table([bc, finetune])
    assert "| vla-jepa-finetune | ema | 100.0" in table and "+40.0" in table
    (id_only,) = run_mt10.summarize([r for r in rows if r["setting"] == "id"], {("bc", "none"): "bc"}, times)
    assert "| bc | none | 50.0 [" in run_mt10.summary_table([id_only]).replace("not run", "")
    assert run_mt10.summary_table([id_only]).count("not run") == 1  # no perturbed episodes: no 0/0 interval


def test_no_video_ablation_trains_on_bcs_robot_batches_with_the_world_model(tmp_path, monkeypatch) -> None:
    args = run_mt10.argparse.Namespace(work=str(tmp_path), threads=1, config="default", batch_size=None,
                                       set=[], steps=10, cameras=None)
    pipeline = run_mt10.Pipeline(args)
    commands = {}
    monkeypatch.setattr(pipeline, "train", lambda name, command: commands.setdefault(name, command))
    robot, video, encoder = Path("robot"), Path("video"), Path("encoder.safetensors")
    for method in ("bc", "vla-jepa-no-video", "vla-jepa-cotrain"):
        pipeline.method(method, "frozen", robot, video, encoder)
    bc, no_video, cotrain = commands["bc"], commands["no-video-frozen"], commands["cotrain-frozen"]
    assert "--video" not in no_video and "--batches-per-step" not in no_video
    assert "--method" not in no_video  # the default method: with the world model
    assert no_video[no_video.index("--target-checkpoint") + 1] == "encoder.safetensors"
    # same robot data and budget as BC; co-training adds the video batches on top
    assert no_video[no_video.index("--robot") + 1] == bc[bc.index("--robot") + 1] == "robot"
    assert no_video[no_video.index("--steps") + 1] == bc[bc.index("--steps") + 1] == "10"
    assert "--video" in cotrain and "--batches-per-step" in cotrain


def test_lapa_gets_the_budget_and_data_of_vla_jepa_finetune(tmp_path, monkeypatch) -> None:
    args = run_mt10.argparse.Namespace(work=str(tmp_path), threads=1, config="default", batch_size=None, set=[],
                                       steps=10, pretrain_fraction=0.5, lam_steps=7, encoder_steps=99,
                                       cameras=None, lam=None)  # fmt: skip
    pipeline = run_mt10.Pipeline(args)
    commands, stages = {}, {}
    monkeypatch.setattr(pipeline, "train", lambda name, command: commands.setdefault(name, command))
    monkeypatch.setattr(pipeline, "stage", lambda name, command: stages.setdefault(name, command))
    robot, video = Path("robot"), Path("video")
    assert pipeline.method("lapa", "none", robot, video, None)[0] == "lapa"
    pipeline.method("vla-jepa-finetune", "ema", robot, video, None)
    lam = stages["train-lam"]
    assert lam[lam.index("--steps") + 1] == "7" and "--video" in lam and "--robot" in lam
    latent, pre = commands["lapa-latent"], commands["pretrain-ema"]
    fine, finetune = commands["lapa"], commands["finetune-ema"]
    assert latent[latent.index("--lam") + 1] == str(tmp_path / "lam")
    for key in ("--steps", "--mix", "--batches-per-step", "--video", "--robot"):
        assert latent[latent.index(key) + 1] == pre[pre.index(key) + 1], key
    for key in ("--steps", "--robot"):
        assert fine[fine.index(key) + 1] == finetune[finetune.index(key) + 1], key
    assert fine[fine.index("--init-from") + 1] == str(tmp_path / "lapa-latent" / "checkpoints" / "last")
    assert run_mt10.run_stages("lapa") == ["train-lam", "train-lapa-latent", "train-lapa", "eval-lapa"]


def test_finished_stages_are_reused_across_thread_and_worker_counts_but_not_other_options(tmp_path) -> None:
    args = run_mt10.argparse.Namespace(work=str(tmp_path), threads=2)
    marker = tmp_path / "stages" / "eval-bc.json"
    marker.parent.mkdir()
    marker.write_text('{"stage": "eval-bc", "command": "vlajepa eval --episodes 20 --workers 1 --threads 1", '
                      '"wall_time_s": 5.0}')
    pipeline = run_mt10.Pipeline(args)
    never_run = [sys.executable, "-c", "raise SystemExit(3)"]  # shown as "vlajepa ..." from the 4th word on
    pipeline.stage("eval-bc", [*never_run, "eval", "--episodes", "20", "--workers", "2", "--threads", "2"])
    assert pipeline.stages[-1]["skipped"] is True
    with pytest.raises(SystemExit, match="other options"):
        pipeline.stage("eval-bc", [*never_run, "eval", "--episodes", "10", "--workers", "2"])


def test_noisy_demonstrations_get_their_own_data_folder(tmp_path, monkeypatch) -> None:
    commands = {}

    def pipeline(noise: float, quality: str = "lossless"):
        args = run_mt10.argparse.Namespace(work=str(tmp_path / f"w{noise}{quality}"), threads=1, tasks="mt10",
                                           image_size=96, seed=0, workers=1, data_dir=str(tmp_path / "data"),
                                           action_noise=noise,
                                           video_quality=quality, still_video_camera=False, video_arm="hidden",
                                           config="default", batch_size=None, set=[],
                                           settings="id", episodes=2, perturbed_episodes=1)
        p = run_mt10.Pipeline(args)
        monkeypatch.setattr(p, "stage", lambda name, command: commands.setdefault((name, noise), command))
        return p

    clean, noisy = pipeline(0.0).collect("robot", 10), pipeline(0.3).collect("robot", 10)
    assert (clean.name, noisy.name) == ("mt10_96px_robot_10", "mt10_96px_robot_10_noise0.3")
    assert "--action-noise" not in commands[("collect-robot", 0.0)]
    noisy_command = commands[("collect-robot", 0.3)]
    assert noisy_command[noisy_command.index("--action-noise") + 1] == "0.3"
    assert pipeline(0.3).collect("video", 5).name == "mt10_96px_video_5"  # the video set is shared
    command = commands[("collect-robot", 0.0)]
    assert command[command.index("--video-quality") + 1] == "lossless"
    av1 = pipeline(0.0, quality="lerobot")  # the AV1 comparison: folders of its own, collected at that quality
    av1_commands = []
    monkeypatch.setattr(av1, "stage", lambda name, command: av1_commands.append(command))
    assert (av1.collect("robot", 10).name, av1.collect("video", 5).name) == (
        "mt10_96px_robot_10_lerobot", "mt10_96px_video_5_lerobot"
    )
    assert [command[-2:] for command in av1_commands] == [["--video-quality", "lerobot"]] * 2



def test_stale_robot_data_is_not_reused(tmp_path, monkeypatch) -> None:
    """Folders missing a canonical instruction, recorded by other demonstrators or stored at another video quality
    are refused; current ones are reused without collecting."""
    from benchmarks.synthetic import write_robot_dataset, write_video_set
    from vlajepa.envs.experts import expert_provenance

    args = run_mt10.argparse.Namespace(work=str(tmp_path / "w"), threads=1, tasks="mt10", image_size=96, seed=0,
                                       workers=1, data_dir=str(tmp_path / "data"), action_noise=0.0,
                                       video_quality="lossless",
                                       still_video_camera=False, video_arm="hidden")
    pipeline = run_mt10.Pipeline(args)
    monkeypatch.setattr(pipeline, "stage", lambda name, command: pytest.fail("an existing folder is not collected"))
    current = {"expert": expert_provenance(), "video_quality": "lossless"}
    folder = tmp_path / "data" / "mt10_96px_robot_10"
    write_robot_dataset(folder, (6, 6), tasks=("reach to the goal position", "push the puck to the goal"),
                        provenance=current)
    with pytest.raises(SystemExit, match=r"reach-v3.*canonical"):
        pipeline.collect("robot", 10)
    balanced = ("reach the goal", "reach to the goal position")
    unrecorded = tmp_path / "data" / "mt10_96px_robot_2"
    write_robot_dataset(unrecorded, (6, 6), tasks=balanced)
    with pytest.raises(SystemExit, match="expert revision unrecorded"):
        pipeline.collect("robot", 2)
    older = tmp_path / "data" / "mt10_96px_robot_4"
    write_robot_dataset(older, (6, 6), tasks=balanced, provenance={"expert": {**expert_provenance(), "revision": 1}})
    with pytest.raises(SystemExit, match="expert revision 1, not"):
        pipeline.collect("robot", 4)
    av1 = tmp_path / "data" / "mt10_96px_robot_5"  # before the option existed, frames were stored as `lerobot`
    write_robot_dataset(av1, (6, 6), tasks=balanced, provenance={"expert": expert_provenance()})
    with pytest.raises(SystemExit, match="video quality 'lerobot', not the requested 'lossless'"):
        pipeline.collect("robot", 5)
    fresh = tmp_path / "data" / "mt10_96px_robot_3"
    write_robot_dataset(fresh, (6, 6), tasks=balanced, provenance=current)
    assert pipeline.collect("robot", 3) == fresh
    write_video_set(tmp_path / "data" / "mt10_96px_video_2", (6, 6))  # AV1-era video set: no recorded quality
    with pytest.raises(SystemExit, match="mt10_96px_video_2: its frames are stored at video quality 'lerobot'"):
        pipeline.collect("video", 2)
    video = write_video_set(tmp_path / "data" / "mt10_96px_video_3", (6, 6), provenance={"video_quality": "lossless"})
    assert pipeline.collect("video", 3) == video
    args.video_quality = "lerobot"  # the AV1 comparison has folders of its own, which may predate the option
    write_robot_dataset(tmp_path / "data" / "mt10_96px_robot_5_lerobot", (6, 6), tasks=balanced,
                        provenance={"expert": expert_provenance()})
    assert pipeline.collect("robot", 5).name == "mt10_96px_robot_5_lerobot"


def test_cameras_get_their_own_robot_data_and_model_cameras(tmp_path, monkeypatch) -> None:
    args = run_mt10.argparse.Namespace(work=str(tmp_path / "work"), threads=1, config="default", batch_size=None,
                                       set=[], steps=10, cameras="workspace_oblique,corner", tasks="mt10",
                                       image_size=96, action_noise=0.0, still_video_camera=False, video_arm="hidden",
                                       video_quality="lossless", data_dir=str(tmp_path / "data"), seed=0,
                                       workers=1)  # fmt: skip
    pipeline = run_mt10.Pipeline(args)
    commands = {}
    monkeypatch.setattr(pipeline, "stage", lambda name, command, retry=None: commands.setdefault(name, command))
    robot = pipeline.collect("robot", 10)
    video = pipeline.collect("video", 50)
    assert robot.name == "mt10_96px_robot_10_cam-workspace_oblique+corner"  # never mixed with one-camera data
    assert video.name == "mt10_96px_video_50"  # the video set stays single-view
    collect = commands["collect-robot"]
    assert collect[collect.index("--camera") + 1] == "workspace_oblique,corner"
    assert "--camera" not in commands["collect-video"]
    train = pipeline.train_args(10)
    assert train[train.index("--set") + 1] == "model.cameras=[workspace_oblique,corner]"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "vla-jepa-cotrain"], "the video set is single-view"),
        (["--methods", "bc", "--set", "model.cameras=[corner]"], "drop --set model.cameras"),
        (["--methods", "bc", "--cameras", "corner,nowhere"], "unknown camera 'nowhere'"),
    ],
)
def test_cameras_refuse_what_cannot_run(extra, message, monkeypatch, tmp_path) -> None:
    argv = ["run_mt10.py", "--cameras", "workspace_oblique,corner", "--work", str(tmp_path), *extra]
    monkeypatch.setattr(run_mt10.sys, "argv", argv)
    with pytest.raises(SystemExit, match=message):
        run_mt10.main()


def test_targets_must_fit_the_vision_encoder() -> None:
    """The default preset's pretrained encoder is its own frozen target; pretrain-encoder's frozen target is a ViT's:
    a mismatch is refused before any stage runs (a ViT's "pretrained" target would be frozen random features)."""
    run_mt10.check_targets("default", [], ["pretrained", "ema"])
    run_mt10.check_targets("vit", [], ["ema", "frozen"])
    run_mt10.check_targets("vit", ["model.vision.backbone=efficientnet_lite0", "train.seed=1"], ["pretrained"])
    with pytest.raises(SystemExit, match="--targets frozen with --config default.*efficientnet_lite0"):
        run_mt10.check_targets("default", [], ["frozen"])
    with pytest.raises(SystemExit, match="--targets pretrained with --config vit"):
        run_mt10.check_targets("vit", [], ["pretrained"])
