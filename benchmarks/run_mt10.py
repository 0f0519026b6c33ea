"""MT10 benchmark runner (docs/benchmark.md): collect data, train each method with the same budget, evaluate, report.

Methods (``--methods``) and target encoders (``--targets``):

- ``bc``: student + flow-matching action head, no world model (robot data only; the target does not apply, its
  rows carry ``target: "none"``);
- ``vla-jepa-cotrain``: robot + action-free video from scratch (``L_action + beta * L_wm`` / ``L_wm``);
- ``vla-jepa-finetune``: ``vlajepa pretrain`` on video + robot (world model only), then ``vlajepa train
  --init-from`` on the robot data;
- ``lapa`` (the LAPA baseline, arXiv 2410.11758, on the same student and action head): ``vlajepa train-lam`` on
  video + robot frame pairs (``--lam-steps``, run once per work folder), latent pretraining (``vlajepa pretrain
  --method lapa-latent``: the student predicts the latent action model's codes) on video + robot with the same
  steps and batches as ``vla-jepa-finetune``'s pretraining, then action fine-tuning (``vlajepa train --method lapa
  --init-from``) with the same steps and data as its fine-tuning. It has no target encoder (rows carry ``target:
  "none"``), and its config is built from the same ``--config`` preset (its student, language encoder and action
  head), so a ``--set model.FIELD`` must name a field LAPA has too (not e.g. ``model.wm_weight``);
- ``vla-jepa-no-video`` (ablation): the world-model loss on the robot batches only, no video. It sees exactly
  BC's robot windows, so against BC it isolates the auxiliary world-model loss, and against co-training the video
  batches (with the ``frozen`` target, the encoder is still the one pretrained on the video set);
- target ``pretrained`` (the default: frozen with no weights file of its own, i.e. with the ``default`` preset the
  student's own ImageNet EfficientNet-Lite0, whose features are cached once per data set), ``ema`` (EMA of the
  student's vision encoder) or ``frozen`` (``vlajepa pretrain-encoder`` on the video set, run once per data set and
  shared by every method that uses it; a ViT preset such as ``--config vit``).

The same budget for every method: ``--steps`` optimizer steps on robot batches with actions (the same number of
robot windows). The world-model methods add the video on top, at the same extra cost: co-training averages one
robot and one video batch per step (``--batches-per-step 2``); fine-tuning first pretrains for
``--pretrain-fraction * steps`` steps of one video + one robot batch each, so with the default 0.5 both spend
``2 * steps`` batches; LAPA spends the same, plus its latent action model's ``--lam-steps`` (the counterpart of the
frozen target's ``--encoder-steps``).

Every stage is a ``vlajepa`` subprocess and is resumable: data folders that exist are reused (``--data-dir``,
default ``data/``), finished stages leave a marker ``<work>/stages/<stage>.json`` with their wall time and are
skipped, an interrupted training run continues with ``--resume``. ``--encoder`` reuses an earlier run's frozen
target encoder and ``--lam`` its latent action model (e.g. for a second training seed); ``--jobs 2 --threads 1
--workers 1`` trains and evaluates two methods at once (per-run wall times then include the contention).
Evaluation: ``--episodes`` per task in distribution and
``--perturbed-episodes`` per task under each of the seven perturbations.

Cameras: ``--cameras a,b`` records the robot data with every listed camera (its own data folder, suffix
``_cam-a+b``, so one- and two-camera data never mix), trains every method with ``--set model.cameras=[a,b]`` (added
here; a ``--set model.cameras=...`` of your own is refused) and evaluates with the cameras each checkpoint reads.
Action-free video sets are single-view, so several cameras run the robot-only methods (``bc``,
``vla-jepa-no-video`` with the ``ema`` or ``pretrained`` target).

Results: ``<results>.json`` (rows in the evaluation schema plus a ``target`` field; top-level ``command``,
``wall_time_s`` and per-stage ``stages`` timings) and ``<results>.md``.

    python benchmarks/run_mt10.py --methods bc,vla-jepa-cotrain,vla-jepa-finetune
    # the ViT trained from scratch, against an EMA target and a frozen one pretrained on the video
    python benchmarks/run_mt10.py --config vit --methods bc,vla-jepa-cotrain --targets ema,frozen
    # BC with two cameras
    python benchmarks/run_mt10.py --methods bc --cameras workspace_oblique,corner
    # a pilot that proves the pipeline (minutes): 2 tasks, 3 demos, a few hundred steps, 2 episodes
    python benchmarks/run_mt10.py --tasks reach,drawer-close --demos 3 --videos 4 --steps 200 --batch-size 16 \\
        --encoder-steps 100 --episodes 2 --perturbed-episodes 1 --work outputs/mt10_pilot \\
        --results outputs/mt10_pilot/results
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vlajepa.data.video_io import VIDEO_QUALITIES
from vlajepa.io_utils import with_extension, write_report_files

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("bc", "vla-jepa-cotrain", "vla-jepa-finetune", "vla-jepa-no-video", "lapa")
NO_TARGET = ("bc", "lapa")  # methods without a target encoder: one run each, rows with target "none"
TARGETS = ("pretrained", "ema", "frozen")  # pretrained needs a pretrained model.vision, frozen a ViT (see above)
# `vlajepa pretrain-encoder` through its command module, for a CLI registry that does not list it yet.
PRETRAIN_ENCODER = (
    "import argparse, sys; from vlajepa.commands import pretrain_encoder as c; p = argparse.ArgumentParser(); "
    "c.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


def vlajepa(*args: str) -> list[str]:
    """The command line of ``vlajepa <args>`` with this interpreter."""
    if args[0] == "pretrain-encoder":
        from vlajepa.cli import COMMANDS

        if "pretrain-encoder" not in COMMANDS:
            return [sys.executable, "-c", PRETRAIN_ENCODER, *args]
    return [sys.executable, "-m", "vlajepa.cli", *args]


# Options that change how fast a stage runs, not what it computes: a stage finished with other values is reused.
RUNTIME_OPTIONS = ("--threads", "--workers")


def without_runtime_options(command: str) -> list[str]:
    """A stage's shell command as words, without ``RUNTIME_OPTIONS`` and their values."""
    words, out = shlex.split(command), []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in RUNTIME_OPTIONS:
            skip = True
        else:
            out.append(word)
    return out


def refuse_stale_robot_data(robot: Path, video_quality: str) -> None:
    """Stop before reusing robot data that today's `vlajepa collect --video-quality VIDEO_QUALITY` would not write:
    data in which some task never carries its canonical instruction (in-distribution evaluation would instruct that
    task with a sentence it was never trained on), data recorded with other demonstrators than
    :mod:`vlajepa.envs.experts`' (its provenance names no or another expert revision), or frames stored at another
    quality (data from before the quality option were stored as ``lerobot``)."""
    from vlajepa.data.lerobot import LeRobotDatasetMetadata
    from vlajepa.envs.experts import EXPERT_REVISION
    from vlajepa.envs.language import missing_canonical_message

    meta = LeRobotDatasetMetadata(robot)
    problem = missing_canonical_message(meta.tasks)
    provenance = meta.info.get("provenance") or {}
    revision = provenance.get("expert", {}).get("revision")
    if not problem and revision != EXPERT_REVISION:
        problem = (
            f"its demonstrations come from expert revision {revision or 'unrecorded'}, not {EXPERT_REVISION} "
            "(vlajepa.envs.experts)"
        )
    if not problem:
        problem = quality_problem(provenance, video_quality)
    if problem:
        refuse(robot, problem)


def refuse_stale_video_set(video: Path, video_quality: str) -> None:
    """Stop before reusing a video set whose frames are stored at another quality than requested."""
    from vlajepa.data.videos import VideoSet

    problem = quality_problem(VideoSet(video).meta.get("provenance") or {}, video_quality)
    if problem:
        refuse(video, problem)


def quality_problem(provenance: dict[str, Any], video_quality: str) -> str | None:
    """Why data with this collection ``provenance`` do not match ``video_quality`` (data from before the option
    were stored as ``lerobot``), or None."""
    stored = provenance.get("video_quality", "lerobot")
    if stored == video_quality:
        return None
    return f"its frames are stored at video quality {stored!r}, not the requested {video_quality!r}"


def refuse(folder: Path, problem: str) -> None:
    raise SystemExit(
        f"[run_mt10] {folder}: {problem} (collected by an older `vlajepa collect`); move the folder away to "
        "re-collect it"
    )


class Pipeline:
    """Runs stages once each, records their wall times, skips the ones a previous run finished."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.stages: list[dict[str, Any]] = []
        self.lock = threading.Lock()  # --jobs: stages of several methods finish concurrently
        # OMP_NUM_THREADS caps the torch threads of stages without --threads (an in-process evaluation)
        self.env = {"OMP_NUM_THREADS": str(args.threads), **os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}

    def stage(self, name: str, command: list[str], retry: list[str] | None = None) -> None:
        """Run ``command`` unless ``work/stages/<name>.json`` says it finished; ``retry`` resumes an interrupted
        attempt instead."""
        marker = self.work / "stages" / f"{name}.json"
        shown = shlex.join(command if command[1] != "-c" else ["vlajepa", *command[3:]])
        if marker.is_file():
            record = json.loads(marker.read_text())
            if without_runtime_options(record["command"]) != without_runtime_options(shown):
                raise SystemExit(
                    f"[run_mt10] {name} was done with other options ({record['command']}); use a new --work "
                    f"or delete {marker} to redo it"
                )
            with self.lock:
                self.stages.append({**record, "skipped": True})
            print(f"[run_mt10] {name}: done before ({record['wall_time_s']} s), skipped", flush=True)
            return
        print(f"[run_mt10] {name}: {shown}", flush=True)
        if retry is not None:
            print(f"[run_mt10] {name}: resuming the interrupted attempt", flush=True)
            command = retry
        start = time.perf_counter()
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as handle:
            code = subprocess.run(command, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise SystemExit(f"[run_mt10] {name} failed (exit {code}); see {log}")
        record = {"stage": name, "command": shown, "wall_time_s": round(time.perf_counter() - start, 1)}
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(record, indent=2) + "\n")
        with self.lock:
            self.stages.append({**record, "skipped": False})
        print(f"[run_mt10] {name}: {record['wall_time_s']} s", flush=True)

    def reused(self, name: str, path: Path, message: str) -> None:
        """Record stage ``name`` as skipped because ``path`` (made outside this run) stands in for it."""
        with self.lock:
            self.stages.append({"stage": name, "wall_time_s": 0.0, "skipped": True, "reused": str(path)})
        print(f"[run_mt10] {name}: {message}", flush=True)

    # ------------------------------------------------------------------ data

    def data_tag(self) -> str:
        tasks = self.args.tasks.lower()
        tag = tasks if tasks in ("mt10", "mt50") else "t" + hashlib.sha1(tasks.encode()).hexdigest()[:8]
        return f"{tag}_{self.args.image_size}px"

    def cameras(self) -> list[str]:
        """The cameras of ``--cameras`` (empty: the environment's default camera, one view); a namespace built
        without the option (a caller's own) means the default."""
        return parse_camera_list(getattr(self.args, "cameras", None))

    def collect(self, kind: str, episodes: int) -> Path:
        noisy = kind == "robot" and self.args.action_noise > 0
        still = kind == "video" and self.args.still_video_camera
        arm = self.args.video_arm if kind == "video" else "hidden"
        cameras = self.cameras() if kind == "robot" else []  # the video set is single-view
        suffix = (
            (f"_cam-{'+'.join(cameras)}" if cameras else "")
            + (f"_noise{self.args.action_noise:g}" if noisy else "")
            + ("_still" if still else "")
            + (f"_arm-{arm}" if arm != "hidden" else "")
            + (f"_{self.args.video_quality}" if self.args.video_quality != "lossless" else "")
        )
        out = Path(self.args.data_dir) / f"{self.data_tag()}_{kind}_{episodes}{suffix}"
        if out.exists() and not (self.work / "stages" / f"collect-{kind}.json").is_file():
            # `vlajepa collect` renames its folder into place only when complete: an existing one is finished.
            if kind == "robot":
                refuse_stale_robot_data(out, self.args.video_quality)
            else:
                refuse_stale_video_set(out, self.args.video_quality)
            self.reused(f"collect-{kind}", out, f"{out} exists, reused")
            return out
        self.stage(
            f"collect-{kind}",
            vlajepa(
                "collect", kind, "--tasks", self.args.tasks, "--episodes-per-task", str(episodes), "--out", str(out),
                "--image-size", str(self.args.image_size), "--seed", str(self.args.seed + (kind == "video")),
                "--workers", str(self.args.workers), "--no-progress",
                *(["--camera", ",".join(cameras)] if cameras else []),
                *(["--action-noise", f"{self.args.action_noise:g}"] if noisy else []),
                *(["--still-camera"] if still else []),
                *(["--arm", arm] if arm != "hidden" else []),
                "--video-quality", self.args.video_quality,
            ),
        )
        return out

    # ------------------------------------------------------------------ training

    def train_args(self, steps: int) -> list[str]:
        args = self.args
        out = ["--config", args.config, "--steps", str(steps), "--threads", str(args.threads), "--no-progress"]
        if args.batch_size:
            out += ["--batch-size", str(args.batch_size)]
        if self.cameras():
            out += ["--set", f"model.cameras=[{','.join(self.cameras())}]"]
        for item in args.set:
            out += ["--set", item]
        return out

    def train(self, name: str, command: list[str]) -> Path:
        """A training run in ``work/<name>`` (resumed with --resume if a previous attempt was interrupted)."""
        run_dir = self.work / name
        retry = None
        if (run_dir / "checkpoints" / "last").exists():
            subcommand = command[3]  # train or pretrain, as the interrupted attempt
            retry = vlajepa(subcommand, "--out", str(run_dir), "--resume", "--threads", str(self.args.threads),
                            "--no-progress")
        self.stage(f"train-{name}", command, retry=retry)
        return run_dir / "checkpoints" / "last"

    def encoder(self, video: Path) -> Path:
        if self.args.encoder:  # shared with an earlier run: its pretraining time is reported there
            path = Path(self.args.encoder)
            if not path.is_file():
                raise SystemExit(f"[run_mt10] --encoder {path}: no such file")
            self.reused("pretrain-encoder", path, f"reusing {path}")
            return path
        out = self.work / "encoder"
        self.stage(
            "pretrain-encoder",
            vlajepa(
                "pretrain-encoder", "--video", str(video), "--out", str(out), "--config", self.args.config,
                "--steps", str(self.args.encoder_steps), "--threads", str(self.args.threads),
            ),
        )
        return out / "encoder.safetensors"

    def method(self, method: str, target: str, robot: Path, video: Path, encoder: Path | None) -> tuple[str, Path]:
        """Train one (method, target); returns the run name and its final checkpoint."""
        steps = self.args.steps
        target_args = {
            "frozen": ["--target-checkpoint", str(encoder)],
            "ema": ["--target", "ema"],
            "pretrained": ["--target", "random"],  # frozen without a weights file: the packaged backbone's weights
        }.get(target, [])  # bc: "none"
        if method == "bc":
            name = "bc"
            return name, self.train(name, vlajepa("train", "--method", "bc", "--robot", str(robot),
                                                  "--out", str(self.work / name), *self.train_args(steps)))
        paired = ["--mix", "1:1", "--batches-per-step", "2"]  # one robot + one video batch per step
        if method == "lapa":
            pretrain_steps = round(steps * self.args.pretrain_fraction)  # as vla-jepa-finetune's pretraining
            lam = self.latent_action_model(robot, video)
            self.train("lapa-latent", vlajepa("pretrain", "--method", "lapa-latent", "--lam", str(lam),
                                              "--video", str(video), "--robot", str(robot),
                                              "--out", str(self.work / "lapa-latent"), *paired,
                                              *self.train_args(pretrain_steps)))
            init = self.work / "lapa-latent" / "checkpoints" / "last"
            return "lapa", self.train("lapa", vlajepa("train", "--method", "lapa", "--init-from", str(init),
                                                      "--robot", str(robot), "--out", str(self.work / "lapa"),
                                                      *self.train_args(steps)))
        if method == "vla-jepa-no-video":
            name = f"no-video-{target}"
            return name, self.train(name, vlajepa("train", "--robot", str(robot), "--out", str(self.work / name),
                                                  *target_args, *self.train_args(steps)))
        if method == "vla-jepa-cotrain":
            name = f"cotrain-{target}"
            return name, self.train(name, vlajepa("train", "--robot", str(robot), "--video", str(video),
                                                  "--out", str(self.work / name), *target_args, *paired,
                                                  *self.train_args(steps)))
        pretrain_steps = round(steps * self.args.pretrain_fraction)
        pre = f"pretrain-{target}"
        self.train(pre, vlajepa("pretrain", "--video", str(video), "--robot", str(robot),
                                "--out", str(self.work / pre), *target_args, *paired,
                                *self.train_args(pretrain_steps)))
        name = f"finetune-{target}"
        init = self.work / pre / "checkpoints" / "last"
        return name, self.train(name, vlajepa("train", "--init-from", str(init), "--robot", str(robot),
                                              "--out", str(self.work / name), *target_args,
                                              *self.train_args(steps)))

    def latent_action_model(self, robot: Path, video: Path) -> Path:
        """LAPA's latent action model, trained once on the video set and the robot data's frame pairs."""
        if self.args.lam:  # shared with an earlier run (e.g. another training seed): its time is reported there
            path = Path(self.args.lam)
            if not (path / "lam_config.json").is_file():
                raise SystemExit(f"[run_mt10] --lam {path}: not a `vlajepa train-lam` output (no lam_config.json)")
            self.reused("train-lam", path, f"reusing {path}")
            return path
        out = self.work / "lam"
        self.stage(
            "train-lam",
            vlajepa(
                "train-lam", "--robot", str(robot), "--video", str(video), "--out", str(out),
                "--config", self.args.config, "--steps", str(self.args.lam_steps or self.args.encoder_steps),
                "--threads", str(self.args.threads), "--no-progress",
            ),
        )
        return out

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, method: str, run: str, checkpoint: Path) -> Path:
        args = self.args
        prefix = self.work / "eval" / run / "results"
        self.stage(
            f"eval-{run}",
            vlajepa(
                "eval", "--policy", f"checkpoint:{checkpoint.absolute()}", "--name", method, "--tasks", args.tasks,
                "--settings", args.settings, "--episodes", str(args.episodes),
                "--perturbed-episodes", str(args.perturbed_episodes), "--workers", str(args.workers),
                "--videos", "0", "--out", str(prefix), "--no-progress",
            ),
        )
        return with_extension(prefix, ".json")


def parse_camera_list(text: str | None) -> list[str]:
    """``--cameras a,b`` -> ``["a", "b"]`` (``None`` -> ``[]``); names are checked against the environment's."""
    from vlajepa.commands.evaluate import parse_cameras

    if text is None:
        return []
    try:
        cameras = parse_cameras(text)
    except ValueError as err:
        raise SystemExit(f"[run_mt10] --cameras: {err}") from None
    return [cameras] if isinstance(cameras, str) else list(cameras)


def run_stages(run: str) -> list[str]:
    """Stage names whose wall times make up one run (its training stages and its evaluation)."""
    pre = [f"train-pretrain-{run.split('-', 1)[1]}"] if run.startswith("finetune-") else []
    if run == "lapa":
        pre = ["train-lam", "train-lapa-latent"]
    return [*pre, f"train-{run}", f"eval-{run}"]


def summarize(rows: list[dict[str, Any]], runs: dict[tuple[str, str], str],
              stage_times: dict[str, float]) -> list[dict[str, Any]]:
    """Per (method, target): in-distribution and perturbed (all seven settings pooled) success with Wilson
    intervals, the perturbed average's difference to BC, and the run's wall time (training + evaluation)."""
    from vlajepa.eval.report import make_row
    from vlajepa.eval.report import summarize as pool_tasks

    def totals(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in ("successes", "episodes", "success_rate", "ci_low", "ci_high")}

    out = []
    for (method, target), run in runs.items():
        mine = [r for r in rows if (r["method"], r["target"]) == (method, target)]
        pooled = {r["setting"]: r for r in pool_tasks(mine)}  # per setting, episodes pooled over tasks
        perturbed = sorted(setting for setting in pooled if setting != "id")
        entry: dict[str, Any] = {"method": method, "target": target}
        entry["id"] = totals(pooled.get("id") or make_row(method, "all", "id", 0, 0))  # no ID episodes: 0/0
        entry["perturbed"] = totals(make_row(
            method, "all", "perturbed", sum(pooled[s]["successes"] for s in perturbed),
            sum(pooled[s]["episodes"] for s in perturbed),
        ))
        entry["perturbed"]["per_setting"] = {setting: pooled[setting]["success_rate"] for setting in perturbed}
        names = run_stages(run)
        entry["wall_time_s"] = round(sum(stage_times.get(n, 0.0) for n in names), 1)
        entry["wall_time_stages"] = {n: stage_times[n] for n in names if n in stage_times}
        out.append(entry)
    bc = next((e for e in out if e["method"] == "bc"), None)
    for entry in out:
        if bc is not None and entry["perturbed"]["episodes"] and bc["perturbed"]["episodes"]:
            entry["perturbed_minus_bc_points"] = round(
                100 * (entry["perturbed"]["success_rate"] - bc["perturbed"]["success_rate"]), 1)
    return out


def summary_table(summary: list[dict[str, Any]]) -> str:
    """Markdown: one line per method with ID and perturbed success, the difference to BC and the wall time."""
    from vlajepa.eval.report import success_cell

    lines = ["| method | target | in distribution | 7 perturbations pooled | Δ vs BC (points) | wall time (min) |",
             "|---|---|---|---|---|---|"]
    for e in summary:
        delta = e.get("perturbed_minus_bc_points")
        cells = [success_cell(e[key]) if e[key]["episodes"] else "not run" for key in ("id", "perturbed")]
        lines.append(f"| {e['method']} | {e['target']} | {cells[0]} | {cells[1]} | "
                     f"{'' if delta is None else f'{delta:+.1f}'} | {e['wall_time_s'] / 60:.1f} |")
    return "\n".join(lines)


def write_results(args: argparse.Namespace, evals: list[tuple[str, str, Path]], pipeline: Pipeline,
                  wall_time_s: float) -> None:
    """Rows of every evaluation with their ``target``, in one JSON + markdown."""
    from vlajepa.eval.report import build_report, markdown_table

    rows, display = [], []
    runs = {}
    for method, target, path in evals:
        runs[(method, target)] = path.parent.name
        report = json.loads(path.read_text())
        for row in report["rows"]:
            rows.append({**row, "method": method, "target": target})
            display.append({**row, "method": f"{method} [{target}]"})
    command = "python benchmarks/run_mt10.py " + shlex.join(sys.argv[1:])
    stages = pipeline.stages
    summary = summarize(rows, runs, {s["stage"]: s["wall_time_s"] for s in stages})
    lam = latent_action_model_figures(pipeline.work) if any(m == "lapa" for m, _, _ in evals) else None
    extra = {"latent_action_model": lam} if lam else {}
    report = build_report(rows, wall_time_s, command=command, stages=stages, summary=summary,
                          setup={k: v for k, v in vars(args).items() if k != "set"} | {"set": args.set}, **extra)
    prefix = Path(args.results)
    per_task = build_report(display, wall_time_s, command=command)
    table = markdown_table(per_task, title="MT10 benchmark: per task and setting")
    lines = ["# MT10 benchmark: summary", "",
             "Success % [95 % Wilson interval] (successes/episodes); the perturbed column pools the seven "
             "perturbations (equal episodes each, so it is also their average). Wall time of a run = its training "
             "stages + its evaluation (the shared data collection and frozen-encoder pretraining are listed below).",
             "", summary_table(summary), "", *lam_lines(lam), table, "",
             f"Total wall time: {wall_time_s:.0f} s (stages skipped because "
             "an earlier run finished them count 0 here; their own times are below).", "",
             "| stage | wall time (s) | skipped |", "|---|---|---|"]
    lines += [f"| {s['stage']} | {s['wall_time_s']} | {'yes' if s.get('skipped') else 'no'} |" for s in stages]
    write_report_files(prefix, report, "\n".join(lines) + "\n")
    plot_settings(display, with_extension(prefix, ".png"))
    print(table)


def latent_action_model_figures(work: Path) -> dict[str, Any] | None:
    """The last line of LAPA's latent action model's metrics.jsonl (reconstruction error and its copy-o_t baseline,
    codebook perplexity, dead codes), or None when it was not trained in ``work``."""
    path = work / "lam" / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None


def lam_lines(figures: dict[str, Any] | None) -> list[str]:
    """Markdown lines of :func:`latent_action_model_figures` (none without figures)."""
    if not figures:
        return []
    return [f"LAPA's latent action model after {figures['step']} steps (last logging window): reconstruction "
            f"error {figures['loss']:.5f} against {figures['copy_loss']:.5f} for copying o_t "
            f"({figures['loss_over_copy']:.3f}x), codebook perplexity {figures['perplexity']:.2f}, "
            f"{figures['dead_codes']} dead codes.", ""]


def plot_settings(display_rows: list[dict[str, Any]], path: Path) -> None:
    """Bar chart with the settings on the x axis and one bar per method, success pooled over tasks."""
    from vlajepa.eval.report import plot_report, summarize

    pooled = [{**row, "task": row["setting"], "setting": "all tasks"} for row in summarize(display_rows)]
    plot_report({"rows": pooled}, path, title="MT10 success rate, pooled over the ten tasks")


def check_targets(config: str, overrides: list[str], targets: list[str]) -> None:
    """Refuse, before any stage runs, a target the vision encoder of ``config`` (with the ``--set`` overrides)
    cannot have: ``pretrained`` needs a pretrained backbone (on a ViT it would be frozen random features), ``frozen``
    a ViT (``vlajepa pretrain-encoder`` trains one)."""
    from vlajepa.commands.train import apply_overrides
    from vlajepa.policies import VLAJEPAConfig
    from vlajepa.presets import preset_path

    model = VLAJEPAConfig.from_yaml(preset_path(config)).to_dict()
    apply_overrides({"model": model}, [item for item in overrides if item.startswith("model.")])
    backbone = model["vision"]["backbone"]
    wrong = {"pretrained": backbone == "vit", "frozen": backbone != "vit"}
    for target in targets:
        if wrong.get(target):
            raise SystemExit(
                f"[run_mt10] --targets {target} with --config {config}, whose vision encoder is {backbone}: "
                "the pretrained target needs a pretrained backbone, the frozen one a ViT (e.g. --config vit)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--targets", default="pretrained",
                        help="comma-separated subset of pretrained,ema,frozen (default: pretrained)")
    parser.add_argument("--tasks", default="mt10", help="mt10 or a comma-separated list of task names")
    parser.add_argument("--demos", type=int, default=10, help="robot demonstrations per task")
    parser.add_argument("--action-noise", type=float, default=0.0,
                        help="DART-style noise injected into the robot demonstrations' executed actions "
                        "(vlajepa collect robot --action-noise); the recorded actions stay the expert's")
    parser.add_argument("--videos", type=int, default=50, help="action-free videos per task")
    parser.add_argument("--video-arm", choices=("hidden", "recolored", "visible"), default="hidden",
                        help="how the video set shows the arm (vlajepa collect video --arm; own data folder, suffix "
                        "_arm-<choice> unless hidden)")
    parser.add_argument("--still-video-camera", action="store_true",
                        help="film the video set with each episode's camera held still (vlajepa collect video "
                        "--still-camera; own data folder, suffix _still)")
    parser.add_argument("--video-quality", choices=sorted(VIDEO_QUALITIES), default="lossless",
                        help="how the robot data and the video set store frames (vlajepa collect --video-quality); "
                        "lerobot (AV1) data live in folders with a _lerobot suffix")
    parser.add_argument("--image-size", type=int, default=96,
                        help="resolution the data is collected at (its own data folder); the model's comes from "
                        "--config/--set, e.g. --set model.image_size=128 --set model.vision.patch_size=16, and "
                        "evaluation renders at the checkpoint's")
    parser.add_argument("--cameras", default=None, metavar="A,B",
                        help="comma-separated cameras of the robot data and of every model (e.g. "
                        "workspace_oblique,corner): collected into their own data folder (suffix _cam-A+B) and passed "
                        "to training as --set model.cameras=[A,B] automatically (do not --set model.cameras "
                        "yourself); evaluation renders the checkpoint's cameras. Several cameras run robot-only "
                        "methods (bc; vla-jepa-no-video with --targets ema or pretrained): video sets are single-view. "
                        "Default: the environment's default camera")
    parser.add_argument(
        "--config", default="default", help="model + train preset (name or YAML file) for every method"
    )
    parser.add_argument("--steps", type=int, default=1200, help="optimizer steps per method (same budget for all)")
    parser.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    parser.add_argument("--pretrain-fraction", type=float, default=0.5,
                        help="finetune: pretraining steps as a share of --steps")
    parser.add_argument("--encoder-steps", type=int, default=1000, help="pretrain-encoder steps (frozen target)")
    parser.add_argument("--lam-steps", type=int, default=None,
                        help="lapa: steps of `vlajepa train-lam` (default: --encoder-steps)")
    parser.add_argument("--lam", default=None,
                        help="lapa: reuse this `vlajepa train-lam` output folder (e.g. an earlier run's) instead of "
                        "training a latent action model")
    parser.add_argument("--encoder", default=None,
                        help="frozen target: reuse this encoder.safetensors (e.g. an earlier run's) instead of "
                        "running pretrain-encoder")
    parser.add_argument("--jobs", type=int, default=1,
                        help="methods trained and evaluated at once; on a 2-core machine --jobs 2 --threads 1 "
                        "--workers 1 finishes the matrix sooner than one job with 2 threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeat)")
    parser.add_argument("--episodes", type=int, default=20, help="in-distribution episodes per task")
    parser.add_argument("--perturbed-episodes", type=int, default=10, help="episodes per task per perturbation")
    parser.add_argument("--settings", default="id,all", help="evaluation settings (vlajepa eval --settings)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument("--workers", type=int, default=2, help="collection / evaluation worker processes")
    parser.add_argument("--seed", type=int, default=0, help="collection seed (videos use seed + 1)")
    parser.add_argument("--data-dir", default="data", help="where collected data sets are cached")
    parser.add_argument("--work", default="outputs/mt10", help="runs, evaluations, logs and stage markers")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "cotrain" / "mt10"),
                        help="results prefix")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(methods) - set(METHODS)) + sorted(set(targets) - set(TARGETS))
    if unknown:
        raise SystemExit(f"unknown methods or targets: {unknown}")
    if any(m not in NO_TARGET for m in methods):
        check_targets(args.config, args.set, targets)
    if args.cameras is not None:
        cameras = parse_camera_list(args.cameras)
        if any(item.split("=", 1)[0].strip() == "model.cameras" for item in args.set):
            raise SystemExit("[run_mt10] --cameras sets model.cameras itself; drop --set model.cameras")
        video_methods = [m for m in methods if m not in ("bc", "vla-jepa-no-video")]
        if len(cameras) > 1 and (video_methods or ("vla-jepa-no-video" in methods and "frozen" in targets)):
            raise SystemExit(
                f"[run_mt10] --cameras {args.cameras}: the video set is single-view, so several cameras run bc and "
                "vla-jepa-no-video with --targets ema or pretrained only"
            )

    start = time.perf_counter()
    pipeline = Pipeline(args)
    robot = pipeline.collect("robot", args.demos)
    # The frozen target encoder is pretrained on the video set, so even vla-jepa-no-video needs it for that.
    needs_encoder = any(m not in NO_TARGET for m in methods) and "frozen" in targets
    needs_video = needs_encoder or any(m not in ("bc", "vla-jepa-no-video") for m in methods)
    video = pipeline.collect("video", args.videos) if needs_video else None
    encoder = pipeline.encoder(video) if needs_encoder else None
    jobs = [(method, target) for method in methods for target in (["none"] if method in NO_TARGET else targets)]

    def train_and_evaluate(job: tuple[str, str]) -> tuple[str, str, Path]:
        method, target = job
        run, checkpoint = pipeline.method(method, target, robot, video, encoder)
        return method, target, pipeline.evaluate(method, run, checkpoint)

    # Each job runs its own stages in order; --jobs > 1 runs several methods at once (results keep job order).
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        evals = list(pool.map(train_and_evaluate, jobs))
    write_results(args, evals, pipeline, time.perf_counter() - start)


if __name__ == "__main__":
    main()
