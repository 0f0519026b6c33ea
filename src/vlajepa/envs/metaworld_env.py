"""A gymnasium environment over any of the 50 MetaWorld v3 tasks, shaped like a LeRobot dataset frame.

Observations are ``{image_key(camera): uint8 [S, S, 3] for each camera, OBS_STATE: float32 [4], TASK: str}``;
actions are 4-D (Δxyz, gripper) in [-1, 1]. ``reset(seed)`` is deterministic: the same seed gives the same object
and goal positions and the same pixels, including under a perturbation or domain shift (both are seeded per episode).

Task progress: ``reset`` and ``step`` report ``info["progress"]``, MetaWorld's dense reward of the state just
reached divided by its maximum (the v3 tasks' reward functions return values in ``[0, 10]``, 10 at the goal), so a
number in ``[0, 1]`` comparable across tasks. It is shaped, not monotone in true progress (e.g. it rewards a grasp
before the object moves). ``get_sim_state``/``set_sim_state`` snapshot and restore the whole simulation within an
episode, so the same actions after a restore give bit-identical observations, rewards and success.

Several cameras: ``camera`` may name one view or a sequence of views; each step renders one image per camera from
the same simulator state. Perturbations and the domain shift change the scene, not one picture, so every view sees
them alike: a camera perturbation (and the domain shift's camera motion) applies the same relative move
(:class:`ViewChange`: orbit, zoom, look-at shift, field of view) to each camera's own view, as if the cameras were
mounted on one rig that moved; lighting, background and arm edits are model edits that every render shows; sensor
noise is drawn independently for each image (each camera is its own sensor), in camera order, from the episode's
noise stream. With one camera everything is exactly as before, draw for draw.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import copy  # noqa: E402
import string  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from metaworld.env_dict import ALL_V3_ENVIRONMENTS  # noqa: E402
from metaworld.policies import ENV_POLICY_MAP  # noqa: E402

from vlajepa.constants import OBS_STATE, TASK, image_key  # noqa: E402
from vlajepa.envs.domain_shift import DomainShift, DomainShiftPlan  # noqa: E402
from vlajepa.envs.experts import expert_observation  # noqa: E402
from vlajepa.envs.language import LANGUAGE, Split, instruction  # noqa: E402
from vlajepa.envs.perturbations import EpisodePlan, Perturbation, shift_layout  # noqa: E402
from vlajepa.envs.scene import (  # noqa: E402
    CAMERAS,
    DEFAULT_CAMERA,
    CameraView,
    FrameRenderer,
    SceneEditor,
    apply_fast_render_settings,
    resolve_view,
)
from vlajepa.envs.state import (  # noqa: E402
    STATE_NAMES,
    environment_state_from_raw,
    state_from_raw,
)
from vlajepa.envs.tasks import max_steps as task_max_steps  # noqa: E402
from vlajepa.envs.tasks import resolve_task  # noqa: E402

# A perturbed hand start stays in this box (or the box widened to the task's own start) so the hand starts
# above the table, in view and inside the reach of the mocap controller.
_HAND_START_LOW = np.array([-0.35, 0.45, 0.1])
_HAND_START_HIGH = np.array([0.35, 0.8, 0.35])

# MetaWorld's v3 reward functions return values in [0, MAX_REWARD]; progress = reward / MAX_REWARD.
MAX_REWARD = 10.0

# MuJoCo's full integration state: time, qpos, qvel, act, qacc_warmstart, ctrl, applied forces, mocap pose, ...
_PHYSICS_STATE = mujoco.mjtState.mjSTATE_INTEGRATION

# Python attributes of the MetaWorld env that are plain values (its step counter, previous and last stable
# observations, target positions, reward bookkeeping): a snapshot copies every such attribute, whichever task.
_PLAIN_TYPES = (bool, int, float, str, type(None), tuple, np.ndarray, np.generic)


def task_progress(reward: float) -> float:
    """MetaWorld's dense reward as task progress in ``[0, 1]`` (see the module docstring)."""
    return float(np.clip(reward / MAX_REWARD, 0.0, 1.0))


@dataclass(frozen=True)
class SimState:
    """A snapshot of a :class:`MetaWorldEnv` mid-episode (from :meth:`MetaWorldEnv.get_sim_state`).

    ``physics``: MuJoCo's integration state (``mjSTATE_INTEGRATION``); ``metaworld``: the MetaWorld env's plain
    Python attributes (arrays it owns, numbers, flags) and its generator state; ``wrapper``: this env's own
    per-step state (step count, last raw observation and image, the perturbation's noise generator). ``episode``
    ties it to the episode it was taken in: scene edits made at reset are not part of it.
    """

    episode: int
    physics: np.ndarray
    metaworld: dict[str, Any]
    metaworld_rng: dict[str, Any]
    wrapper: dict[str, Any]


class MetaWorldEnv(gym.Env):
    """One MetaWorld v3 task with pixels, proprioception and a language instruction.

    Args:
        task: task name, with or without the ``-v3`` suffix.
        image_size: side of the square RGB image in pixels.
        camera: a view from ``scene.CAMERAS``, or a sequence of distinct views (one image each per observation,
            see the module docstring); the default shows every MT10 object clearly at 96 px.
        max_steps: episode step limit; None takes the per-task table in ``tasks.MAX_STEPS``.
        perturbation: an optional robustness perturbation applied to every episode.
        domain_shift: an optional "human video" appearance shift (arm hidden, moving camera, random scene).
        instruction_split: "canonical", or a random "train" (or "heldout") paraphrase per episode; the
            language perturbation overrides it with a held-out paraphrase.
    """

    metadata = {"render_modes": ["rgb_array"]}
    render_mode = "rgb_array"

    def __init__(
        self,
        task: str,
        image_size: int = 96,
        camera: str | Sequence[str] = DEFAULT_CAMERA,
        max_steps: int | None = None,
        perturbation: Perturbation | None = None,
        domain_shift: DomainShift | None = None,
        instruction_split: Split = "canonical",
    ) -> None:
        self._task = resolve_task(task)
        if instruction_split not in ("canonical", "train", "heldout"):
            raise ValueError(
                f"instruction_split must be 'canonical', 'train' or 'heldout' (got {instruction_split!r})"
            )
        cameras = (camera,) if isinstance(camera, str) else tuple(camera)
        if not cameras:
            raise ValueError("camera: at least one camera is required")
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"camera: duplicate cameras in {cameras}")
        for name in cameras:
            if name not in CAMERAS:
                raise ValueError(f"unknown camera {name!r}; expected one of {', '.join(CAMERAS)}")
        if image_size < 8 or image_size > 480:
            raise ValueError(f"image_size must be in [8, 480] (the offscreen buffer), not {image_size}")
        self._max_steps = int(max_steps) if max_steps is not None else task_max_steps(self._task)
        if self._max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self._cameras = cameras
        self._image_size = int(image_size)
        self._perturbation = perturbation
        self._domain_shift = domain_shift
        self._instruction_split = instruction_split

        self._mw = self._make_metaworld_env(self._task, self._max_steps)
        self._sample_reset_vector = self._mw._get_state_rand_vec
        self._mw._get_state_rand_vec = self._reset_vector  # the layout perturbation's hook, see _reset_vector
        self._hand_start = np.array(self._mw.hand_init_pos, dtype=np.float64)
        apply_fast_render_settings(self._mw.model)
        self._renderer = FrameRenderer(self._mw.model, self._image_size)
        self._editor = SceneEditor(self._mw.model, self._renderer)
        self._base_views = tuple(resolve_view(self._mw.model, self._mw.data, name) for name in cameras)
        self._expert = ENV_POLICY_MAP[self._task]()
        self._closed = False

        self._image_keys = tuple(image_key(name) for name in cameras)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        size = self._image_size
        self.observation_space = gym.spaces.Dict(
            {
                **{key: gym.spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8) for key in self._image_keys},
                OBS_STATE: gym.spaces.Box(-np.inf, np.inf, shape=(len(STATE_NAMES),), dtype=np.float32),
                TASK: gym.spaces.Text(max_length=256, charset=string.printable),
            }
        )

        self._plan: EpisodePlan | None = None
        self._shift: DomainShiftPlan | None = None
        self._raw_obs: np.ndarray | None = None
        self._last_image: np.ndarray | None = None
        self._steps = 0
        self._episode_seed: int | None = None
        self._episode_count = 0  # resets so far: a snapshot restores only into the episode it was taken in
        self._instruction = LANGUAGE[self._task].canonical

    @staticmethod
    def _make_metaworld_env(task: str, max_steps: int) -> Any:
        """The raw MetaWorld env with the goal observable (the scripted experts read it) and seeded resets."""
        env = ALL_V3_ENVIRONMENTS[task]()
        env._partially_observable = False
        del env.sawyer_observation_space  # cached with the goal hidden; recomputed on next access
        # MetaWorld clips every observation to this space, whose goal bounds are the in-distribution goal range:
        # unbounded, so the expert sees the true goal when the layout perturbation moves it out of that range.
        space = env.sawyer_observation_space
        unbounded_goal = np.full(3, np.inf)
        env.sawyer_observation_space = gym.spaces.Box(
            np.hstack((space.low[:-3], -unbounded_goal)), np.hstack((space.high[:-3], unbounded_goal)), dtype=np.float64
        )
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True  # object/goal positions come from env.np_random, seeded in reset
        env._set_task_called = True
        env.max_path_length = max_steps  # MetaWorld refuses to step past its own limit
        return env

    # -- properties
    @property
    def task(self) -> str:
        return self._task

    @property
    def instruction(self) -> str:
        """The current episode's instruction (the canonical one before the first reset)."""
        return self._instruction

    @property
    def camera(self) -> str:
        """The first camera (the only one of a one-camera env); ``render()`` and episode videos show it."""
        return self._cameras[0]

    @property
    def cameras(self) -> tuple[str, ...]:
        return self._cameras

    @property
    def image_key(self) -> str:
        """The observation key of the first camera."""
        return self._image_keys[0]

    @property
    def image_keys(self) -> tuple[str, ...]:
        """The observation key of every camera, in camera order."""
        return self._image_keys

    @property
    def max_steps(self) -> int:
        return self._max_steps

    @property
    def render_fps(self) -> int:
        """Control steps per second of simulated time (MetaWorld: 5 physics steps of 2.5 ms = 80 Hz)."""
        return round(1.0 / self._mw.dt)

    @property
    def episode_seed(self) -> int | None:
        """The seed of the current episode (drawn from the env's generator when reset got none)."""
        return self._episode_seed

    @property
    def perturbation(self) -> Perturbation | None:
        """The robustness perturbation; assigning a new one takes effect at the next reset."""
        return self._perturbation

    @perturbation.setter
    def perturbation(self, perturbation: Perturbation | None) -> None:
        self._perturbation = perturbation

    @property
    def domain_shift(self) -> DomainShift | None:
        """The "human video" domain shift; assigning a new one takes effect at the next reset."""
        return self._domain_shift

    @domain_shift.setter
    def domain_shift(self, domain_shift: DomainShift | None) -> None:
        self._domain_shift = domain_shift

    @property
    def view(self) -> CameraView:
        """The unperturbed view of ``camera`` (the first camera)."""
        return self._base_views[0]

    @property
    def views(self) -> tuple[CameraView, ...]:
        """The unperturbed view of every camera, in camera order."""
        return self._base_views

    # -- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(2**31))
        self._episode_seed = episode_seed
        self._steps = 0
        self._plan = self._perturbation.plan(episode_seed) if self._perturbation else None
        self._shift = self._domain_shift.plan(episode_seed, self._max_steps) if self._domain_shift else None
        self._apply_scene_changes()
        self._instruction = self._choose_instruction(episode_seed)

        self._mw.seed(episode_seed)
        raw, _ = self._mw.reset()
        self._raw_obs = raw
        self._episode_count += 1
        info = {"success": False, "episode_seed": episode_seed, "progress": self._reset_progress()}
        return self._observation(), info

    def step(self, action: np.ndarray, *, render: bool = True) -> tuple[dict, float, bool, bool, dict]:
        """One control step. ``render=False`` skips the camera image (the observation then has only the state and
        the instruction): for steps whose observation nobody reads, e.g. inside an action chunk. Rendering never
        affects the physics or the noise stream, so the next rendered observation is the same either way.

        ``info`` is MetaWorld's (``success`` a bool) plus ``progress``, :func:`task_progress` of the reward."""
        if self._raw_obs is None:
            raise RuntimeError("call reset() before step()")
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        raw, reward, _, _, info = self._mw.step(action)
        self._raw_obs = raw
        self._steps += 1
        success = bool(info["success"])
        truncated = self._steps >= self._max_steps and not success
        observation = self._observation(render)
        info = {**info, "success": success, "progress": task_progress(float(reward))}
        return observation, float(reward), success, truncated, info

    def get_sim_state(self) -> SimState:
        """Snapshot the simulation now (physics, MetaWorld's Python state, this env's step state), for
        :meth:`set_sim_state` later in the same episode: e.g. to try several actions from one state."""
        if self._raw_obs is None:
            raise RuntimeError("call reset() before get_sim_state()")
        model, data = self._mw.model, self._mw.data
        physics = np.empty(mujoco.mj_stateSize(model, _PHYSICS_STATE), dtype=np.float64)
        mujoco.mj_getState(model, data, physics, _PHYSICS_STATE)
        plan_rng = self._plan.rng.bit_generator.state if self._plan is not None else None
        return SimState(
            episode=self._episode_count,
            physics=physics,
            metaworld=_plain_attributes(self._mw),
            metaworld_rng=copy.deepcopy(self._mw.np_random.bit_generator.state),
            wrapper=copy.deepcopy(
                {"steps": self._steps, "raw_obs": self._raw_obs, "last_image": self._last_image, "plan_rng": plan_rng}
            ),
        )

    def set_sim_state(self, state: SimState) -> None:
        """Restore a :meth:`get_sim_state` snapshot of the current episode exactly: stepping on from it gives the
        same observations, rewards and success, bit for bit, as stepping on from when it was taken. A snapshot
        can be restored any number of times."""
        if not isinstance(state, SimState):
            raise TypeError(f"expected a SimState from get_sim_state(), got {type(state).__name__}")
        if state.episode != self._episode_count:
            raise ValueError("this snapshot was taken in another episode; a snapshot restores within its episode")
        model, data = self._mw.model, self._mw.data
        mujoco.mj_setState(model, data, state.physics, _PHYSICS_STATE)
        mujoco.mj_forward(model, data)  # positions, contacts and sensors derived from the restored state
        # mj_forward also overwrites qacc_warmstart (the constraint solver's start for the next step) with its own
        # solution, which differs in the last bits: set the state again so the next step starts where it did.
        mujoco.mj_setState(model, data, state.physics, _PHYSICS_STATE)
        for name, value in copy.deepcopy(state.metaworld).items():
            setattr(self._mw, name, value)
        self._mw.np_random.bit_generator.state = copy.deepcopy(state.metaworld_rng)
        wrapper = copy.deepcopy(state.wrapper)
        self._steps = wrapper["steps"]
        self._raw_obs = wrapper["raw_obs"]
        self._last_image = wrapper["last_image"]
        if self._plan is not None:
            self._plan.rng.bit_generator.state = wrapper["plan_rng"]

    def render(self) -> np.ndarray | None:
        """The last observed image of the first camera."""
        return self._last_image

    def render_view(self, view: CameraView) -> np.ndarray:
        """The current scene seen from ``view`` (e.g. ``env.view.moved(change)``), ``uint8 (S, S, 3)``, without
        observation noise: for probes that re-render one state from another camera; observations are unaffected."""
        if self._raw_obs is None:
            raise RuntimeError("call reset() before render_view()")
        return self._renderer.render(self._mw.data, view)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._renderer.close()
        self._mw.close()

    def expert_action(self) -> np.ndarray:
        """The scripted demonstrator's action for the current noise-free full state, float32 [4]: MetaWorld's expert,
        aimed where the task measures success (:mod:`vlajepa.envs.experts`)."""
        if self._raw_obs is None:
            raise RuntimeError("call reset() before expert_action()")
        with warnings.catch_warnings():
            # metaworld.policies.move warns whenever its gain saturates; the action is clipped just below.
            warnings.simplefilter("ignore")
            # A copy: some experts edit the observation in place (door-open shifts the handle x by 5 cm), which
            # would change a second call's action and the scene state read after it.
            tcp_offset = self._mw.tcp_center - self._raw_obs[:3]
            action = self._expert.get_action(expert_observation(self._task, self._raw_obs, tcp_offset))
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)

    def environment_state(self) -> np.ndarray:
        """Object and goal xyz now, from the simulator (``observation.environment_state``; never perturbed).

        A training label for collection, not part of the observation: a policy never gets it.
        """
        if self._raw_obs is None:
            raise RuntimeError("call reset() before environment_state()")
        return environment_state_from_raw(self._raw_obs)

    # -- internals
    def _reset_progress(self) -> float:
        """Task progress of the reset state: MetaWorld's reward with a zero action (nothing done yet). The
        reward function may update MetaWorld's bookkeeping, which is restored so the episode is unchanged."""
        saved = _plain_attributes(self._mw)
        reward, _ = self._mw.evaluate_state(self._raw_obs, np.zeros(4, dtype=np.float32))
        for name, value in saved.items():
            setattr(self._mw, name, value)
        return task_progress(float(reward))

    def _apply_scene_changes(self) -> None:
        """Undo the previous episode's model edits, then make this episode's."""
        self._editor.restore()
        self._mw.hand_init_pos = self._hand_start.copy()
        for plan in (self._plan, self._shift):
            if plan is None:
                continue
            if plan.lighting is not None:
                self._editor.set_lighting(plan.lighting)
            if plan.background is not None:
                for surface, look in plan.background.items():
                    self._editor.set_surface(surface, look)
        if self._plan is not None and self._plan.hand_offset is not None:
            low = np.minimum(_HAND_START_LOW, self._hand_start)
            high = np.maximum(_HAND_START_HIGH, self._hand_start)
            self._mw.hand_init_pos = np.clip(self._hand_start + np.asarray(self._plan.hand_offset), low, high)
        if self._shift is not None and self._shift.arm == "hidden":
            self._editor.hide_arm()
        elif self._shift is not None and self._shift.arm == "recolored":
            self._editor.recolor_arm(self._shift.arm_color)
        self._editor.flush()

    def _choose_instruction(self, episode_seed: int) -> str:
        if self._plan is not None and self._plan.heldout_instruction is not None:
            heldout = LANGUAGE[self._task].heldout
            return heldout[self._plan.heldout_instruction % len(heldout)]
        if self._instruction_split == "canonical":
            return LANGUAGE[self._task].canonical
        rng = np.random.default_rng([0x1A46, episode_seed])
        return instruction(self._task, self._instruction_split, rng=rng)

    def _reset_vector(self) -> np.ndarray:
        """MetaWorld's object/goal sample for this reset, moved out of range by the layout perturbation."""
        sample = self._sample_reset_vector()
        plan = self._plan
        if plan is None or plan.layout_side is None:
            return sample
        space = self._mw._random_reset_space
        shifted = shift_layout(sample, space.low, space.high, plan.layout_side, plan.layout_margin, self._task)
        self._mw._last_rand_vec = shifted
        return shifted

    def _current_view(self, base: CameraView) -> CameraView:
        """``base`` moved by this episode's camera perturbation and the domain shift's camera motion now."""
        view = base
        if self._plan is not None and self._plan.view is not None:
            view = view.moved(self._plan.view)
        if self._shift is not None:
            view = view.moved(self._shift.view_at(self._steps))
        return view

    def _observation(self, render: bool = True) -> dict[str, Any]:
        raw = self._raw_obs
        state = state_from_raw(raw)
        images: list[np.ndarray | None] = [
            self._renderer.render(self._mw.data, self._current_view(base)) if render else None
            for base in self._base_views
        ]
        if self._plan is not None and self._plan.noise is not None:
            # Draw the image noise even without a frame (its draws do not depend on the pixels), so skipping
            # renders leaves the noise of every later observation unchanged.
            blank = np.zeros((self._image_size, self._image_size, 3), dtype=np.uint8)
            noise, rng = self._plan.noise, self._plan.rng
            noisy = [noise.noisy_image(blank if image is None else image, rng) for image in images]
            images = [None if image is None else frame for image, frame in zip(images, noisy, strict=True)]
            state = self._plan.noise.noisy_state(state, self._plan.rng)
        if not render:
            return {OBS_STATE: state, TASK: self._instruction}
        self._last_image = images[0]
        return {**dict(zip(self._image_keys, images, strict=True)), OBS_STATE: state, TASK: self._instruction}


def _plain_attributes(env: Any) -> dict[str, Any]:
    """Deep copies of ``env``'s plain-valued attributes. Arrays that view another buffer (e.g. MuJoCo's body
    positions, which follow the physics by themselves) are left out: a copy would freeze them."""
    return {
        name: copy.deepcopy(value)
        for name, value in vars(env).items()
        if isinstance(value, _PLAIN_TYPES) and not (isinstance(value, np.ndarray) and value.base is not None)
    }
