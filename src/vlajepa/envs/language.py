"""Natural-language instructions for the 50 MetaWorld v3 tasks.

MetaWorld has no language, so every task gets

* a **canonical** instruction (what clean evaluation uses),
* at least five **train** paraphrases (language augmentation while training; collected demonstrations are captioned
  with the canonical instruction and these in turn, see :func:`training_caption`), and
* at least three **held-out** paraphrases, disjoint from the above, used only by the ``language`` perturbation
  to test whether a policy understands the instruction rather than memorising one string.

Held-out phrasings deliberately change vocabulary and sentence shape (questions, polite requests, descriptions
of the end state) while keeping the meaning, the way LIBERO-Plus rewrites instructions.

The table itself is package data, ``instructions.json`` beside this module (one entry per task), read once on
import into :data:`LANGUAGE`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import numpy as np

from vlajepa.envs.tasks import resolve_task

Split = Literal["canonical", "train", "heldout"]


@dataclass(frozen=True)
class TaskLanguage:
    """The instructions of one task."""

    canonical: str  # the default instruction
    train: tuple[str, ...]  # paraphrases that training may sample from
    heldout: tuple[str, ...]  # paraphrases never shown in training (language perturbation only)


_INSTRUCTIONS_FILE = "instructions.json"  # package data beside this module: {task: {canonical, train, heldout}}


def _read_table() -> dict[str, TaskLanguage]:
    """The instruction table of ``instructions.json``, in file order; an error names the file and the task.

    It lives in a JSON file (package data) rather than in code, so it reads as a table and ships inside the wheel.
    """
    source = resources.files("vlajepa.envs") / _INSTRUCTIONS_FILE
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RuntimeError(f"{source}: cannot read the instruction table ({err})") from err
    if not isinstance(data, dict):
        raise RuntimeError(f"{source}: expected an object mapping task names to instructions")
    table = {}
    for task, entry in data.items():
        if (
            not isinstance(entry, dict)
            or set(entry) != {"canonical", "train", "heldout"}
            or not isinstance(entry["canonical"], str)
            or not all(isinstance(entry[split], list) and entry[split] for split in ("train", "heldout"))
            or not all(isinstance(text, str) for split in ("train", "heldout") for text in entry[split])
        ):
            raise RuntimeError(
                f"{source}: task {task!r} must have exactly 'canonical' (a string), 'train' and 'heldout' "
                "(non-empty lists of strings)"
            )
        table[task] = TaskLanguage(entry["canonical"], tuple(entry["train"]), tuple(entry["heldout"]))
    return table


LANGUAGE: dict[str, TaskLanguage] = _read_table()  # read once, when the module is first imported


def training_instructions(task: str) -> tuple[str, ...]:
    """Every phrasing training data may carry: the canonical instruction first, then the train paraphrases.

    The canonical one must be among them, because in-distribution evaluation gives the policy exactly that string;
    a policy trained on paraphrases alone meets it for the first time at test time (a language shift).
    """
    language = LANGUAGE[resolve_task(task)]
    return (language.canonical, *language.train)


def training_caption(task: str, index: int) -> str:
    """The caption of a task's ``index``-th kept demonstration: the phrasings of :func:`training_instructions` in
    turn, canonical first.

    Any number of demonstrations then carries the canonical instruction, and the phrasings' counts differ by at
    most one. A seeded random draw per episode did not: 10 demonstrations over 6 phrasings left four MT10
    tasks without their canonical instruction, so in-distribution evaluation gave them a sentence they had never
    been trained on.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    options = training_instructions(task)
    return options[index % len(options)]


def task_of_instruction(text: str) -> str | None:
    """The MetaWorld task whose canonical instruction or paraphrase ``text`` is (``None`` for any other text)."""
    return _TASK_OF_TEXT.get(text)


_TASK_OF_TEXT = {text: task for task, lang in LANGUAGE.items() for text in (lang.canonical, *lang.train, *lang.heldout)}


def tasks_without_canonical(captions: Iterable[str]) -> list[str]:
    """MetaWorld tasks that ``captions`` name (by any phrasing) but never by the canonical instruction, sorted.

    In-distribution evaluation instructs a policy with the canonical sentence only, so a training set listed here
    leaves those tasks to be evaluated on a sentence they never saw. Captions of other tasks are ignored.
    """
    captions = set(captions)
    named = {task for text in captions if (task := task_of_instruction(text)) is not None}
    return sorted(task for task in named if LANGUAGE[task].canonical not in captions)


def missing_canonical_message(captions: Iterable[str]) -> str | None:
    """What is wrong with a training set's ``captions`` if :func:`tasks_without_canonical` finds tasks, else None."""
    uncovered = tasks_without_canonical(captions)
    if not uncovered:
        return None
    return (
        f"no demonstration of {', '.join(uncovered)} is captioned with the canonical instruction, the only one "
        "in-distribution evaluation uses"
    )


def instruction(task: str, split: Split = "canonical", rng: np.random.Generator | None = None) -> str:
    """An instruction for ``task`` from ``split``.

    ``canonical`` always returns the canonical instruction. ``train`` and ``heldout`` draw a paraphrase
    uniformly with ``rng``, or return the first paraphrase when ``rng`` is None (deterministic).
    """
    language = LANGUAGE[resolve_task(task)]
    if split == "canonical":
        return language.canonical
    if split == "train":
        options = language.train
    elif split == "heldout":
        options = language.heldout
    else:
        raise ValueError(f"unknown instruction split {split!r}; expected 'canonical', 'train' or 'heldout'")
    if rng is None:
        return options[0]
    return options[int(rng.integers(len(options)))]
