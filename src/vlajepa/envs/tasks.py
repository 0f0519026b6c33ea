"""MetaWorld v3 task names, the MT10 suite and per-task episode step limits.

The names mirror ``metaworld.env_dict.ALL_V3_ENVIRONMENTS`` but are listed here so that data, evaluation and
the CLI can validate task names without importing MuJoCo.
"""

from __future__ import annotations

import difflib

ALL_TASKS: tuple[str, ...] = (
    "assembly-v3",
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "hand-insert-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-open-v3",
    "faucet-close-v3",
    "hammer-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "plate-slide-v3",
    "plate-slide-side-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "soccer-v3",
    "stick-push-v3",
    "stick-pull-v3",
    "push-v3",
    "push-wall-v3",
    "push-back-v3",
    "reach-v3",
    "reach-wall-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-open-v3",
    "window-close-v3",
)

MT10: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

DEFAULT_MAX_STEPS = 200

# Tasks whose scripted expert needs more than DEFAULT_MAX_STEPS. Measured by running `metaworld.policies` on
# the unperturbed tasks (seeds 0-24 and 1000-1024 for every task, plus 2000-2099 for the eight slowest; limit
# 1000, stop at the first success). Limit = 1.1 x the slowest successful episode rounded up to 10 steps,
# capped at MetaWorld's own max_path_length of 500. Every other task's slowest episode took <= 135 steps.
_SLOW_TASK_MAX_STEPS: dict[str, int] = {
    "bin-picking-v3": 300,  # slowest 264 of 150 episodes
    "disassemble-v3": 380,  # slowest 338 of 150
    "peg-insert-side-v3": 280,  # slowest 249 of 150 (19 of 150 never succeed)
    "push-back-v3": 500,  # slowest 639 of 150; 2 of 150 successes need more than 500 steps
    "shelf-place-v3": 430,  # slowest 387 of 150
    "stick-pull-v3": 330,  # slowest 294 of 150
}
# box-close (slowest 156) and peg-unplug-side (168) fit in DEFAULT_MAX_STEPS.

MAX_STEPS: dict[str, int] = {}

MAX_STEPS: dict[str, int] = {task: _SLOW_TASK_MAX_STEPS.get(task, DEFAULT_MAX_STEPS) for task in ALL_TASKS}


class UnknownTaskError(ValueError):
    """A task name that is not one of the 50 MetaWorld v3 tasks."""


def resolve_task(name: str) -> str:
    """The canonical task name for ``name`` (``"reach"`` and ``"reach-v3"`` both give ``"reach-v3"``).

    Raises ``UnknownTaskError`` naming the bad name and the closest valid names.
    """
    candidate = name.strip().lower().replace("_", "-")
    if not candidate.endswith("-v3"):
        candidate = f"{candidate}-v3"
    if candidate in MAX_STEPS:
        return candidate
    close = difflib.get_close_matches(candidate, ALL_TASKS, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid tasks: {', '.join(ALL_TASKS)}"
    raise UnknownTaskError(f"unknown MetaWorld task {name!r}{hint}")


def max_steps(task: str) -> int:
    """Evaluation step limit of ``task``: DEFAULT_MAX_STEPS unless its scripted expert needs more."""
    return MAX_STEPS[resolve_task(task)]
